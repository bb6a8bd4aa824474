"""The MLflow core plugin: stores finished traces as MLflow traces (translation: :mod:`.translate`).

Essential (cannot be disabled). Spans made through MLflow's own API reach it like every other span
(see :mod:`dspy_tracekit.mlflow.interop`); this module only translates and writes.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time

from dspy_tracekit._delivery.secrets import strip_url_credentials
from dspy_tracekit.hookspecs import hookimpl
from dspy_tracekit.mlflow import store as mlflow_store
from dspy_tracekit.mlflow.translate import (  # noqa: F401 - re-exported: the core plugin translates with them
    _dumps,
    _encode,
    _has_trace_info,
    span_attribute_values,
    span_attributes,
    to_mlflow_spans,
    trace_info,
)

logger = logging.getLogger("dspy_tracekit")


def _reports_store_errors(export):
    """A failed write is reported once per interval in one line (MLflow's own per-error traceback is
    counted instead) and re-raised unchanged: the caller counts the traces and retries or drops them."""

    @functools.wraps(export)
    def wrapper(self, traces):
        try:
            with mlflow_store.quiet_store_writes():
                return export(self, traces)
        except Exception as exc:
            mlflow_store.report_store_error(self.tracking_uri or "", exc, len(traces))
            raise

    return wrapper


class MlflowCorePlugin:
    """Registered under the name ``mlflow``."""

    def __init__(self):
        self.tracking_uri: str | None = None
        self.experiment_name: str | None = None
        self._experiment_id: str | None = None
        self._lock = threading.Lock()
        #: which of tracking_uri / experiment follow what the user tells MLflow (not set in tracekit's config)
        self._follow_uri = self._follow_experiment = False
        self._mlflow_seen: tuple | None = None

    @hookimpl
    def tracekit_configure(self, config, settings):
        from dspy_tracekit._versions import warn_untested
        from dspy_tracekit.config import pinned

        warn_untested()
        mlflow_store.reset_store_errors()
        self.tracking_uri = settings.tracking_uri
        self.experiment_name = settings.experiment
        self._experiment_id = None
        self._follow_uri = not pinned(settings.sources, "tracking_uri")
        self._follow_experiment = not pinned(settings.sources, "experiment")
        self._mlflow_seen = _mlflow_destination() if (self._follow_uri or self._follow_experiment) else None
        # enable() stays fast (issue #12): MLflow's SQL store (seconds of imports: SQLAlchemy, alembic,
        # MLflow's store modules) is opened by the first export — on the buffer's worker when buffered,
        # as MLflow's own async exporter does — and LiteLLM only when MLflow prices an LM span. A new
        # SQLite store is created here from the shipped schema and looked at with sqlite3, so an unusable
        # file is still reported by enable(). Other databases are opened here as before (no cheap look);
        # a tracking server is left to the first export (MLflow's HTTP retries would stall enable()).
        if getattr(settings, "dry_run", False):
            return  # doctor checks the config: opening a store would create it
        database = self.tracking_uri.startswith(("sqlite:", "postgresql", "mysql", "mssql"))
        if database and "litellm" not in sys.modules:
            # LiteLLM (imported when MLflow's SQL store first prices an LM span) downloads its price map
            # when imported unless told not to: the copy in its wheel instead. Only when the user did not
            # set it, and only for the stores that import it.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        if self.tracking_uri.startswith("sqlite:"):
            from dspy_tracekit.mlflow.schema import create_sqlite_store, store_problem

            # a new SQLite store in one step instead of MLflow's migrations (seconds)
            logger.debug("dspy-tracekit: new SQLite store %s: %s", strip_url_credentials(self.tracking_uri),
                         create_sqlite_store(self.tracking_uri))
            problem = store_problem(self.tracking_uri)
            if problem:
                logger.warning("dspy-tracekit: tracking store %s not usable yet: %s",
                               strip_url_credentials(self.tracking_uri), problem)
        elif self.tracking_uri.startswith(("postgresql", "mysql", "mssql")):
            try:
                self.experiment_id()
                mlflow_store.tracing_client(self.tracking_uri).store  # noqa: B018 - opens the store
            except Exception as exc:  # noqa: BLE001 - reported again at the first export
                logger.warning("dspy-tracekit: tracking store %s not usable yet: %s: %s",
                               strip_url_credentials(self.tracking_uri), type(exc).__name__,
                               strip_url_credentials(_first_line(exc)))

    def experiment_id(self) -> str:
        with self._lock:
            if self._experiment_id is None:
                self._experiment_id = resolve_experiment(self.tracking_uri, self.experiment_name)
            return self._experiment_id

    def _follow_mlflow(self) -> None:
        """The user told MLflow about another destination after enable(): traces follow it, as
        MLflow's own would (only for what tracekit's config does not set)."""
        seen = _mlflow_destination()
        if seen == self._mlflow_seen:
            return
        from dspy_tracekit.config import resolve_destination

        core: dict = {"tracking_uri": None if self._follow_uri else self.tracking_uri,
                      "experiment": None if self._follow_experiment else self.experiment_name}
        resolve_destination(core, {} if self._follow_uri else {"tracking_uri": "tracekit"})
        with self._lock:
            self._mlflow_seen = seen
            if (core["tracking_uri"], core["experiment"]) != (self.tracking_uri, self.experiment_name):
                self.tracking_uri, self.experiment_name = core["tracking_uri"], core["experiment"]
                self._experiment_id = None
                logger.info("dspy-tracekit: traces now go to %s, experiment %r (MLflow's destination)",
                            strip_url_credentials(self.tracking_uri), self.experiment_name)

    def _first_open(self) -> str:
        """The experiment id, opening MLflow's store on first use (imports MLflow's SQL store: seconds).

        On the buffer's worker this can meet the user's thread importing the same MLflow modules;
        Python then hands one side a partially initialized module (ImportError) or a detected import
        deadlock. Those are retried here instead of failing the batch.
        """
        for attempt in range(5):
            try:
                exp = self.experiment_id()
                mlflow_store.tracing_client(self.tracking_uri).store  # noqa: B018 - opens the store
                return exp
            except Exception as exc:
                if attempt == 4 or not (isinstance(exc, ImportError) or "deadlock detected" in str(exc)):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    @hookimpl
    def tracekit_counters(self):
        return dict(mlflow_store.store_error_counts)

    @hookimpl
    @_reports_store_errors
    def tracekit_export_traces(self, traces):
        if self._mlflow_seen is not None:
            self._follow_mlflow()
        exp = self._experiment_id or self._first_open()
        stored = False
        if mlflow_store.fast_path_available(self.tracking_uri):
            # rows computed from our own records: no MLflow Span entities, no re-decoding our JSON
            from dspy_tracekit.mlflow.rows import trace_views

            stored = mlflow_store.insert_views(self.tracking_uri, exp, [trace_views(t) for t in traces])
        if not stored:
            spans = []
            for trace in traces:
                spans.extend(to_mlflow_spans(trace))
            mlflow_store.log_spans(self.tracking_uri, exp, spans, fast=False)
        infos = [trace_info(trace, exp) for trace in traces if _has_trace_info(trace)]
        if infos:
            mlflow_store.log_trace_infos(self.tracking_uri, infos)


def _first_line(exc: BaseException) -> str:
    """An exception's message without the SQL, parameters and links SQLAlchemy appends."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _mlflow_destination() -> tuple:
    from dspy_tracekit.mlflow import _compat as mlflow_compat

    return mlflow_compat.mlflow_tracking_uri(), mlflow_compat.mlflow_experiment()


def resolve_experiment(tracking_uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # another process created it meanwhile
        if exp is None:
            raise
        return exp.experiment_id
