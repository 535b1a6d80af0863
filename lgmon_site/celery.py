import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lgmon_site.settings")
app = Celery("lgmon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
