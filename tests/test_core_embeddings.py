"""``dspy.retrievers.Embeddings`` batches the queries of concurrent callers on one worker thread (#11 §3):
each caller's trace holds its own query only, and the batch's Embedder span nests under its caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import dspy
from tk_testing import tree_of

import dspy_tracekit as tk


def embed(texts):
    """A plain Python embedding function (no network)."""
    return [[float(len(t)), float(t.count("a")), float(t.count("e")), 1.0] for t in texts]


CORPUS = ["alpha", "beta", "gamma delta", "epsilon", "zeta eta"]


def request_traces(traced):
    """The stored traces of the requests (not the one that embedded the corpus when the index was built)."""
    return [t for t in traced.traces() if t.data.spans[0].name != "Embedder.__call__"]


def test_concurrent_users_each_see_only_their_own_query(traced):
    search = dspy.retrievers.Embeddings(corpus=CORPUS, embedder=dspy.Embedder(embed), k=2)
    search.search_fn.max_wait_time = 1.0  # both users' queries surely land in one batch
    users = {"u-ann": "ann asks about alpha", "u-bob": "bob asks about the beta release"}
    start = threading.Barrier(len(users))

    def user(user_id, query):
        start.wait()
        with tk.context(user_id=user_id):
            return search(query)

    with ThreadPoolExecutor(len(users)) as pool:
        results = [f.result() for f in [pool.submit(user, u, q) for u, q in users.items()]]
    assert all(len(r.passages) == 2 for r in results)

    traces = request_traces(traced)
    assert sorted(t.info.tags["user_id"] for t in traces) == sorted(users)
    for trace in traces:
        own = users[trace.info.tags["user_id"]]
        other = next(q for q in users.values() if q != own)
        assert other not in str([(s.inputs, s.outputs) for s in trace.data.spans])
        assert tree_of(trace) == {"Embeddings.__call__": None, "Embedder.__call__": "Embeddings.__call__"}
        embedder = next(s for s in trace.data.spans if s.name == "Embedder.__call__")
        assert embedder.inputs["inputs"] == [own]
        assert embedder.attributes["tracekit.context.user_id"] == trace.info.tags["user_id"]
        assert embedder.outputs == [embed([own])[0]]


def test_embedder_in_a_batch_nests_one_trace_per_request(traced):
    search = dspy.retrievers.Embeddings(corpus=CORPUS, embedder=dspy.Embedder(embed), k=2)

    def request(i):
        with tk.span("request", span_type="CHAIN"):
            return search(f"request {i} about {CORPUS[i % len(CORPUS)]}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(request, range(20)))
    traces = traced.traces()
    assert len(traces) == 20 + 1  # the requests, and the corpus embedded when the index was built
    requests = request_traces(traced)
    assert len(requests) == 20
    for trace in requests:
        assert tree_of(trace) == {"request": None, "Embeddings.__call__": "request",
                                  "Embedder.__call__": "Embeddings.__call__"}
        query = next(s for s in trace.data.spans if s.name == "Embeddings.__call__").inputs["query"]
        assert next(s for s in trace.data.spans if s.name == "Embedder.__call__").inputs["inputs"] == [query]
