"""A small LangGraph support bot that sends steady traffic to a running lgmon.

No LLM and no API keys other than lgmon's: the "model" is a few lines of Python, so the graph
runs anywhere. It has what a real app's monitoring must cope with:

- ``classify`` routes each question with a conditional edge (billing, tech or small talk);
- ``lookup_account`` is flaky (fails ~15% of the time, retried up to 3 times by LangGraph);
- ``search_docs`` is slow (80-250 ms) and is a node of the ``research`` subgraph;
- ``draft_answer`` calls a ``@monitor_performance`` function;
- a handful of users with sessions, as ``config["metadata"]``.

Run it against lgmon (``python3 dev.py run`` in another terminal, then create an ingest key)::

    LGMON_API_KEY=lgm_... .venv/bin/python examples/support_app.py
    LGMON_API_KEY=lgm_... .venv/bin/python examples/support_app.py --rate 20 --runs 500

It prints a line per 50 runs and, at the end, what the SDK delivered.
"""

from __future__ import annotations

import argparse
import operator
import os
import random
import time
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from lgmon_client import LangGraphMonitor, default_sender, monitor_performance

USERS = ["ada", "grace", "linus", "margaret", "ken", "barbara"]
QUESTIONS = [
    "Why was I charged twice this month?",
    "How do I reset my password?",
    "The export button crashes the app",
    "Can I get an invoice for last year?",
    "hello there!",
    "What's the API rate limit?",
]


class Ticket(TypedDict):
    question: str
    topic: NotRequired[str]
    account: NotRequired[dict[str, Any]]
    docs: Annotated[list[str], operator.add]
    answer: NotRequired[str]


def classify(ticket: Ticket) -> dict[str, Any]:
    text = ticket["question"].lower()
    if any(word in text for word in ("charged", "invoice", "refund")):
        topic = "billing"
    elif any(word in text for word in ("crash", "password", "api", "export")):
        topic = "tech"
    else:
        topic = "chat"
    return {"topic": topic}


def route(ticket: Ticket) -> Literal["lookup_account", "research", "draft_answer"]:
    if ticket["topic"] == "billing":
        return "lookup_account"
    if ticket["topic"] == "tech":
        return "research"
    return "draft_answer"


class FlakyBackend(Exception):
    pass


def lookup_account(ticket: Ticket) -> dict[str, Any]:
    time.sleep(random.uniform(0.005, 0.02))
    if random.random() < 0.15:
        raise FlakyBackend("accounts service timed out")
    return {"account": {"plan": random.choice(["free", "pro", "team"])}}


def search_docs(ticket: Ticket) -> dict[str, Any]:
    time.sleep(random.uniform(0.08, 0.25))
    return {"docs": [f"kb/{ticket['topic']}/{random.randint(1, 40)}"]}


def rank_docs(ticket: Ticket) -> dict[str, Any]:
    return {"docs": sorted(ticket.get("docs", []))[:1]}


@monitor_performance("support.compose_reply")
def compose_reply(ticket: Ticket) -> str:
    time.sleep(random.uniform(0.002, 0.01))
    sources = ", ".join(ticket.get("docs", [])) or "our FAQ"
    return f"[{ticket['topic']}] Thanks for asking! See {sources}."


def draft_answer(ticket: Ticket) -> dict[str, Any]:
    return {"answer": compose_reply(ticket)}


def build_research() -> Any:
    # Any: langgraph's add_node overloads reject plain TypedDict node functions under mypy.
    research: Any = StateGraph(Ticket)
    research.add_node("search_docs", search_docs)
    research.add_node("rank_docs", rank_docs)
    research.add_edge(START, "search_docs")
    research.add_edge("search_docs", "rank_docs")
    return research.compile(name="research")


def build_graph() -> Any:
    """The support bot: classify -> (lookup_account | research | draft_answer) -> END."""
    builder: Any = StateGraph(Ticket)
    builder.add_node("classify", classify)
    builder.add_node(
        "lookup_account",
        lookup_account,
        retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, retry_on=FlakyBackend),
    )
    builder.add_node("research", build_research())
    builder.add_node("draft_answer", draft_answer)
    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", route, ["lookup_account", "research", "draft_answer"])
    builder.add_edge("lookup_account", "draft_answer")
    builder.add_edge("research", "draft_answer")
    builder.add_edge("draft_answer", END)
    return builder.compile(name="support-bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=0, help="stop after N runs (0: run forever)")
    parser.add_argument("--rate", type=float, default=5.0, help="runs per second (0: no pause)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    parser.add_argument("--url", default=None, help="lgmon URL (default: $LGMON_URL)")
    parser.add_argument("--api-key", default=None, help="ingest key (default: $LGMON_API_KEY)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    if args.seed is not None:
        random.seed(args.seed)

    # The monitor and @monitor_performance share the process-wide sender.
    if args.url:
        os.environ["LGMON_URL"] = args.url
    if args.api_key:
        os.environ["LGMON_API_KEY"] = args.api_key
    sender = default_sender()
    monitor = LangGraphMonitor(sender)
    bot = build_graph().with_config(callbacks=[monitor])
    print(f"sending to {sender.endpoint}; Ctrl-C stops")
    done = failed = 0
    try:
        while not args.runs or done < args.runs:
            user = rng.choice(USERS)
            config: Any = {
                "metadata": {"user_id": user, "session_id": f"{user}-{done // 20}", "app": "demo"}
            }
            try:
                bot.invoke({"question": rng.choice(QUESTIONS), "docs": []}, config=config)
            except FlakyBackend:
                failed += 1  # the app sees its own errors; lgmon records them
            done += 1
            if done % 50 == 0:
                print(f"{done} runs, {failed} failed, {sender.stats().sent} delivered")
            if args.rate > 0:
                time.sleep(1.0 / args.rate)
    except KeyboardInterrupt:
        pass
    sender.close(timeout=10)
    stats = sender.stats()
    print(
        f"done: {done} runs ({failed} failed); lgmon got {stats.sent} graph runs, "
        f"{stats.undelivered} undelivered"
    )
    return 0 if stats.undelivered == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
