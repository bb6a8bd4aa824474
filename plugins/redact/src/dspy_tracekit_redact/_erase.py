"""Erasure: delete every trace of one user (optionally one session) through MLflow's client API.

The store holds pseudonyms only, so the pseudonym is computed from the identifier with the same key
the redact plugin used when the traces were written (:mod:`._pseudonym`). Works on any MLflow store
``MlflowClient`` reaches: the SQLite file, a database, a tracking server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._pseudonym import Pseudonymizer, load_key

__all__ = ["ErasurePlan", "ErasureReceipt", "erase", "erase_user", "plan_erasure"]

#: where a trace keeps its user and session (MLflow metadata first, then tracekit's context tags)
_USER_FILTERS = ("metadata.`mlflow.trace.user` = '{p}'", "tag.user_id = '{p}'", "tag.user = '{p}'")
_SESSION_KEYS = ("session_id", "session")
_PAGE = 500
_BATCH = 100


@dataclass
class ErasurePlan:
    """The traces an erasure will delete: exactly these ids, found when the plan was made."""

    tracking_uri: str
    user_pseudonym: str
    session_pseudonym: str | None
    key_file: str
    #: ``experiment id → [(trace id, request time in ms)]``
    traces: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    experiment_names: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.traces.values())

    @property
    def oldest_ms(self) -> int | None:
        times = [t for v in self.traces.values() for _, t in v]
        return min(times) if times else None

    @property
    def newest_ms(self) -> int | None:
        times = [t for v in self.traces.values() for _, t in v]
        return max(times) if times else None


@dataclass
class ErasureReceipt:
    """What an erasure deleted, and when (UTC)."""

    tracking_uri: str
    user_pseudonym: str
    session_pseudonym: str | None
    deleted: int
    trace_ids: list[str]
    oldest_ms: int | None
    newest_ms: int | None
    erased_at: str
    experiments: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    # a store that does not answer should say so at once, not after minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    return MlflowClient(tracking_uri=tracking_uri)


def _session_of(info: Any) -> str | None:
    meta = getattr(info, "trace_metadata", None) or getattr(info, "request_metadata", None) or {}
    if meta.get("mlflow.trace.session"):
        return meta["mlflow.trace.session"]
    tags = getattr(info, "tags", None) or {}
    for k in _SESSION_KEYS:
        if tags.get(k):
            return tags[k]
    return None


def plan_erasure(user_id: str, session_id: str | None = None, *, tracking_uri: str,
                 key_file: str | os.PathLike | None = None, experiment_ids: list[str] | None = None) -> ErasurePlan:
    """Find every trace of ``user_id`` (and of ``session_id`` only, if given) in every experiment.

    :param key_file: the pseudonym key the traces were written with (default: the redact plugin's
        default path). It is never created here: a new key could match nothing.
    :param experiment_ids: only these experiments (default: all of them, deleted ones included).
    :raises ValueError: a missing or unreadable key file (naming it), an empty ``user_id``.
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    if session_id is not None and (not isinstance(session_id, str) or not session_id.strip()):
        raise ValueError(f"session_id must be a non-empty string, got {session_id!r}")
    key, path = load_key(key_file, create=False)
    pz = Pseudonymizer(key, path=path)
    user_p = pz.pseudonym("user", user_id)
    session_p = pz.pseudonym("session", session_id) if session_id is not None else None
    client = _client(tracking_uri)
    plan = ErasurePlan(tracking_uri=tracking_uri, user_pseudonym=user_p, session_pseudonym=session_p,
                       key_file=str(Path(path)))
    if experiment_ids is None:
        from mlflow.entities import ViewType

        experiments = client.search_experiments(view_type=ViewType.ALL, max_results=50_000)
        plan.experiment_names = {e.experiment_id: e.name for e in experiments}
        experiment_ids = list(plan.experiment_names)
    for exp_id in experiment_ids:
        found: dict[str, int] = {}
        for template in _USER_FILTERS:
            token = None
            while True:
                page = client.search_traces(locations=[exp_id], filter_string=template.format(p=user_p),
                                            max_results=_PAGE, page_token=token, include_spans=False)
                for trace in page:
                    info = trace.info
                    if session_p is not None and _session_of(info) != session_p:
                        continue
                    found[info.trace_id] = int(getattr(info, "request_time", None) or 0)
                token = page.token
                if not token or not len(page):
                    break
        if found:
            plan.traces[exp_id] = sorted(found.items(), key=lambda kv: kv[1])
    return plan


def erase(plan: ErasurePlan) -> ErasureReceipt:
    """Delete exactly the traces of ``plan`` (``MlflowClient.delete_traces``) and return the receipt."""
    client = _client(plan.tracking_uri)
    deleted = 0
    ids: list[str] = []
    per_experiment: dict[str, int] = {}
    for exp_id, traces in plan.traces.items():
        tids = [t for t, _ in traces]
        for i in range(0, len(tids), _BATCH):
            chunk = tids[i:i + _BATCH]
            n = client.delete_traces(exp_id, trace_ids=chunk) or 0
            deleted += n
            per_experiment[exp_id] = per_experiment.get(exp_id, 0) + n
            ids.extend(chunk)
    return ErasureReceipt(
        tracking_uri=plan.tracking_uri, user_pseudonym=plan.user_pseudonym,
        session_pseudonym=plan.session_pseudonym, deleted=deleted, trace_ids=ids, oldest_ms=plan.oldest_ms,
        newest_ms=plan.newest_ms, erased_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        experiments=per_experiment)


def erase_user(user_id: str, session_id: str | None = None, *, tracking_uri: str,
               key_file: str | os.PathLike | None = None, experiment_ids: list[str] | None = None) -> ErasureReceipt:
    """:func:`plan_erasure` then :func:`erase`: every trace of the user (and session) deleted."""
    return erase(plan_erasure(user_id, session_id, tracking_uri=tracking_uri, key_file=key_file,
                              experiment_ids=experiment_ids))
