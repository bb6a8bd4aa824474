"""What MLflow's SQL store makes of a span before writing it, computed from tracekit's own records.

``SqlAlchemyStore.log_spans`` turns every ``Span`` into a dict with
``translate_span_when_storing``: ``Span.to_dict()``, then ``sanitize_attributes`` (``json.loads`` of
every attribute value, twice for strings, to undo double encoding), then a dozen OpenTelemetry-schema
translators (OpenInference, GenAI, LiveKit, ...) looking for their own attribute keys. For the spans
tracekit makes, most of that is known in advance: we encoded the values ourselves, and the attribute
keys are ours. So a *plain* span — not an LM call, no error, only tracekit's own keys — gets its
stored dict built directly (the sanitising step reproduced exactly, without decoding what cannot
change); every other span goes through MLflow's own translation. The first trace each process writes
is checked both ways (:func:`self_check`), and a difference turns the direct way off with a log line.
plugins/buffer/tests/test_buffer_store_fast_path.py compares the resulting rows with MLflow's log_spans.
"""

from __future__ import annotations

import binascii
import functools
import json
import logging
import math
import operator
import threading
from typing import Any

from dspy_tracekit.keys import (
    COST_ATTR,
    FORMAT_ATTR,
    INPUTS_ATTR,
    MODEL_ATTR,
    OUTPUTS_ATTR,
    PROVIDER_ATTR,
    REQUEST_ID_ATTR,
    SPAN_TYPE_ATTR,
    TOKEN_USAGE_ATTR,
    TOOLS_ATTR,
)
from dspy_tracekit.records import SpanKind, SpanRecord, TraceRecord

logger = logging.getLogger("dspy_tracekit")
_b2a = binascii.b2a_base64

_JSON_WS = " \t\n\r"
#: keys whose presence or absence the direct translation handles itself (see :func:`trace_views`)
_REQUEST_ID, _SPAN_TYPE, _INPUTS, _OUTPUTS = REQUEST_ID_ATTR, SPAN_TYPE_ATTR, INPUTS_ATTR, OUTPUTS_ATTR
_MODEL, _PROVIDER, _USAGE, _COST = MODEL_ATTR, PROVIDER_ATTR, TOKEN_USAGE_ATTR, COST_ATTR
_FORMAT, _TOOLS = FORMAT_ATTR, TOOLS_ATTR


try:
    from json.encoder import c_make_encoder as _c_make_encoder
except ImportError:  # pragma: no cover - CPython always has it
    _c_make_encoder = None


def c_encoder(encoder: json.JSONEncoder):
    """``encoder.encode`` without building a C encoder (and a circular-check dict) per call: the same
    C function ``JSONEncoder.iterencode`` makes, made once, so the text is the same. Values here come
    from materialized traces (no cycles). None when that shortcut would not be ``encoder.encode``."""
    cls = type(encoder)
    base = json.JSONEncoder
    if (_c_make_encoder is None or encoder.indent is not None or encoder.sort_keys
            or cls.encode is not base.encode or cls.iterencode is not base.iterencode):
        return None
    strings = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    make = _c_make_encoder(None, encoder.default, strings, None, encoder.key_separator,
                           encoder.item_separator, False, encoder.skipkeys, encoder.allow_nan)
    join = "".join

    def encode(value) -> str:
        if value.__class__ is str:
            return strings(value)
        return join(make(value, 0))

    return encode


#: the keys of a direct span's dict that hold its own values; the others are the template's
_SLOTS = frozenset({"trace_id", "span_id", "parent_span_id", "name", "start_time_unix_nano", "end_time_unix_nano",
                    "attributes"})


def content_encoder(encoder: json.JSONEncoder):
    """:func:`make_content_encoder`, made once per kind of encoder (its memo then lasts)."""
    key = (type(encoder), encoder.ensure_ascii, encoder.key_separator, encoder.item_separator, encoder.indent,
           encoder.sort_keys, encoder.skipkeys, encoder.allow_nan, type(encoder).default, id(_Direct.template))
    found = _Direct.contents.get(key, _Direct.contents)
    if found is _Direct.contents:
        found = _Direct.contents[key] = make_content_encoder(encoder)
    return found


def make_content_encoder(encoder: json.JSONEncoder):
    """``encoder.encode(view.span_dict)`` for a direct view (``view.direct``), built from fragments: the
    template's constant keys encoded once, the span's own values (strings, integers, None, a dict of
    string attributes) each as the C encoder encodes them. JSON without indentation is compositional, so
    the text is the same; anything unexpected goes to ``encoder.encode``. None when not applicable."""
    encode = c_encoder(encoder)
    template = _Direct.template
    if encode is None or not template or not _SLOTS <= set(template):
        return None
    strings = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    colon, comma = encoder.key_separator, encoder.item_separator
    # the text before each slot (constants included), and after the last one
    layout: list[tuple[str, str]] = []
    pending = "{"
    for key, value in template.items():
        head = ("" if pending == "{" else comma) + strings(key) + colon
        if key in _SLOTS:
            layout.append((pending + head, key))
            pending = ""
        else:
            pending += head + encode(value)
    tail = pending + "}"
    int_repr = int.__repr__
    memo: dict[tuple, str] = {}

    def content(span_dict: dict) -> str:
        parts = []
        for head, key in layout:
            value = span_dict[key]
            cls = value.__class__
            if cls is str:
                parts.append(head + strings(value))
            elif cls is int:
                parts.append(head + int_repr(value))
            elif value is None:
                parts.append(head + "null")
            elif cls is dict and key == "attributes":
                items = []
                for k, v in value.items():
                    short = v.__class__ is str and len(v) <= _MEMO_STR_LEN
                    text = memo.get((k, v)) if short else None
                    if text is None:
                        if k.__class__ is not str:
                            return encode(span_dict)
                        text = strings(k) + colon + (strings(v) if v.__class__ is str else encode(v))
                        if short:
                            # (key, text) pairs repeat in every trace: types, kinds, paths, tags
                            if len(memo) >= _MEMO_SIZE:
                                memo.clear()
                            memo[(k, v)] = text
                    items.append(text)
                parts.append(head + "{" + comma.join(items) + "}")
            else:
                parts.append(head + encode(value))
        parts.append(tail)
        return "".join(parts)

    return content


class SpanView(tuple):
    """One span as ``SqlAlchemyStore.log_spans`` sees it after translation (a tuple: made per span,
    cheaply; build with :meth:`of`)."""

    __slots__ = ()
    _FIELDS = ("trace_id", "span_id", "parent_id", "name", "span_type", "status_code", "start_ns", "end_ns",
               "span_dict", "has_resource", "direct")

    @classmethod
    def of(cls, trace_id, span_id, parent_id, name, span_type, status_code, start_ns, end_ns, span_dict,
           has_resource=False, direct=False) -> SpanView:
        return tuple.__new__(cls, (trace_id, span_id, parent_id, name, span_type, status_code, start_ns, end_ns,
                                   span_dict, has_resource, direct))

    trace_id = property(operator.itemgetter(0))
    span_id = property(operator.itemgetter(1))
    parent_id = property(operator.itemgetter(2))
    name = property(operator.itemgetter(3))
    span_type = property(operator.itemgetter(4))
    status_code = property(operator.itemgetter(5))
    start_ns = property(operator.itemgetter(6))
    end_ns = property(operator.itemgetter(7))
    span_dict = property(operator.itemgetter(8))
    has_resource = property(operator.itemgetter(9))
    #: made by :func:`trace_views` from the template: :func:`content_encoder` may encode its span_dict
    direct = property(operator.itemgetter(10))


def view_of_span(span) -> SpanView:
    """The view of an MLflow ``Span``, translated by MLflow itself."""
    from mlflow.tracing.otel.translation import translate_span_when_storing

    resource = getattr(span._span, "resource", None)
    return SpanView.of(span.trace_id, span.span_id, span.parent_id, span.name, span.span_type,
                    span.status.status_code, span.start_time_ns, span.end_time_ns,
                    translate_span_when_storing(span),
                    has_resource=resource is not None and bool(resource.attributes))


def sanitized(encoded: str, value: Any) -> str:
    """``sanitize_attributes`` for one value we encoded ourselves (``encoded = _dumps(value)``).

    MLflow decodes every value; when that gives a string which itself parses as a JSON string, object
    or array, it keeps that string (one layer of encoding less). Only a value encoded as a JSON string
    can take that branch, and only if the string starts with ``"``, ``{`` or ``[``.
    """
    if encoded[:1] != '"':
        return encoded
    inner = value if value.__class__ is str else json.loads(encoded)
    if not isinstance(inner, str) or inner.lstrip(_JSON_WS)[:1] not in ('"', "{", "["):
        return encoded
    try:
        if isinstance(json.loads(inner), (str, dict, list)):
            return inner
    except ValueError:
        pass
    return encoded


class _Direct:
    """Whether plain spans skip MLflow's translation (on until a check finds a difference)."""

    on = True
    checked = False
    lock = threading.Lock()
    #: translator step -> (keys it reads, key prefixes it looks for), found by :func:`_probe_translators`
    reads: dict[str, tuple[frozenset, tuple]] | None = None
    #: ``Span.to_dict()`` of a plain span: the keys and their order, and the values that are the same for
    #: every plain span (status, events, links, kind, ...); ours are filled in per span
    template: dict = {}  # noqa: RUF012
    #: whether MLflow's translation strips one layer of encoding off strings that are JSON (see sanitized)
    strips = True
    #: which attributes are present (inputs, outputs, usage, format, tools, model, provider) -> keys that matter
    sensitive: dict[tuple, tuple[frozenset, tuple]] = {}  # noqa: RUF012
    #: ``mlflow_core._dumps``, the same text made faster (see :func:`c_encoder`)
    dumps = None
    #: attribute key sets (in order) -> whether a span with exactly these keys is plain (see _is_plain)
    plain: dict[tuple, bool] = {}  # noqa: RUF012
    #: short string value -> its stored attribute text (``_dumps`` then ``sanitized``)
    texts: dict[str, str] = {}  # noqa: RUF012
    #: content encoders by kind of JSON encoder (see content_encoder)
    contents: dict[tuple, Any] = {}  # noqa: RUF012
    #: usage attribute texts of no tokens, which MLflow never prices (see _price)
    unpriced: dict[str, bool] = {}  # noqa: RUF012


class _ProbeKey(str):
    """An attribute key that records what a translator compares it with (prefixes, equal keys)."""

    def __new__(cls, text, seen):
        obj = super().__new__(cls, text)
        obj._seen = seen
        return obj

    def startswith(self, prefix, *args):
        self._seen["prefixes"].update((prefix,) if isinstance(prefix, str) else prefix)
        return False

    def __eq__(self, other):
        if isinstance(other, str):
            self._seen["keys"].add(str(other))
        return False

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = str.__hash__

    def __getattribute__(self, name):
        if name not in ("startswith", "_seen", "__class__", "__eq__", "__ne__", "__hash__"):
            object.__getattribute__(self, "_seen")["opaque"].add(name)
        return object.__getattribute__(self, name)


class _ProbeAttributes(dict):
    """Attributes that record every key a translator asks for; iterating yields one :class:`_ProbeKey`."""

    def __init__(self, seen):
        super().__init__()
        self._seen = seen
        self._key = _ProbeKey("\x00tracekit.probe", seen)

    def get(self, key, default=None):
        self._seen["keys"].add(key)
        return default

    def __getitem__(self, key):
        self._seen["keys"].add(key)
        raise KeyError(key)

    def __contains__(self, key):
        self._seen["keys"].add(key)
        return False

    def __iter__(self):
        return iter([self._key])

    def keys(self):
        return [self._key]

    def items(self):
        return [(self._key, '"probe"')]

    def values(self):
        return ['"probe"']

    def __len__(self):
        return 1

    def __bool__(self):
        return True


#: translator steps of ``translate_span_when_storing``, and the attribute whose absence makes each run
_STEPS = (("translate_span_type_from_otel", None), ("_get_input_value", _INPUTS),
          ("_get_output_value", _OUTPUTS), ("_get_token_usage", _USAGE), ("_get_message_format", _FORMAT),
          ("_get_tool_definitions", _TOOLS), ("_get_model_name", _MODEL), ("_get_model_provider", _PROVIDER))


def _probe_translators() -> dict[str, tuple[frozenset, tuple]]:
    """Which attribute keys (and key prefixes) each of MLflow's translator steps reads, found by running
    it on attributes that record every look-up. Raises when a step does something the probe cannot see
    through or finds something in nothing."""
    from mlflow.tracing.otel import translation as T

    out = {}
    for name, _ in _STEPS:
        seen = {"keys": set(), "prefixes": set(), "opaque": set()}
        fn = getattr(T, name)
        attrs = _ProbeAttributes(seen)
        result = fn(attrs, []) if name in ("_get_input_value", "_get_output_value") else fn(attrs)
        if result or seen["opaque"]:
            raise RuntimeError(f"{name} cannot be probed (result {result!r}, key methods {sorted(seen['opaque'])})")
        handled = {_REQUEST_ID, _SPAN_TYPE, _INPUTS, _OUTPUTS, _MODEL, _PROVIDER, _USAGE, _COST, _FORMAT, _TOOLS}
        out[name] = (frozenset(k for k in seen["keys"] if isinstance(k, str)) - handled,
                     tuple(sorted(seen["prefixes"])))
    return out


def _sensitive(values: dict[str, Any]) -> tuple[frozenset, tuple]:
    """Keys and prefixes that would make MLflow's translation change a span with these attributes."""
    present = (_INPUTS in values, _OUTPUTS in values, _USAGE in values, _FORMAT in values, _TOOLS in values,
               _MODEL in values, _PROVIDER in values)
    found = _Direct.sensitive.get(present)
    if found is None:
        reads = _Direct.reads or {}
        keys: set[str] = set()
        prefixes: set[str] = set()
        for name, absent_key in _STEPS:
            if absent_key is None or absent_key not in values:
                keys |= reads[name][0]
                prefixes.update(reads[name][1])
        found = _Direct.sensitive[present] = (frozenset(keys), tuple(sorted(prefixes)))
    return found


def _is_plain(s: SpanRecord, values: dict[str, Any]) -> bool:
    """No error or event (they go through MLflow's event translators) and no key a translator reads."""
    if s.error is not None or getattr(s, "events", None) or _Direct.reads is None:
        return False
    names = tuple(values)
    plain = _Direct.plain.get(names)
    if plain is None:
        # which keys a translator reads depends only on which keys there are: decided once per key set
        keys, prefixes = _sensitive(values)
        plain = not any(key in keys or (prefixes and key.startswith(prefixes)) for key in names)
        if len(_Direct.plain) >= _MEMO_SIZE:
            _Direct.plain.clear()
        _Direct.plain[names] = plain
    return plain


#: entries of each memo of pure functions below (cleared when full: traces repeat a few shapes and strings)
_MEMO_SIZE = 4096
#: strings up to this length have their stored text memoized (span types, kinds, module paths, tag values)
_MEMO_STR_LEN = 128
_JSON_OPENERS = ('"', "{", "[")


def _price(model: str, usage: str, provider: str | None) -> str | None:
    """The cost attribute MLflow's translation adds to an unpriced LM span (None: none). A usage text
    of no tokens is priced without any price table (MLflow returns None first): memoized."""
    found = _Direct.unpriced.get(usage)
    if found is not None:
        return None
    from mlflow.tracing.utils import calculate_cost_by_model_and_token_usage, dump_span_attribute_value

    found = None
    try:
        tokens = json.loads(usage)
        cost = calculate_cost_by_model_and_token_usage(json.loads(model), tokens,
                                                       json.loads(provider) if provider is not None else None)
        if cost:
            found = dump_span_attribute_value(cost)
        elif (isinstance(tokens, dict) and tokens.get("input_tokens", 0) == 0
              and tokens.get("output_tokens", 0) == 0):
            if len(_Direct.unpriced) >= _MEMO_SIZE:
                _Direct.unpriced.clear()
            _Direct.unpriced[usage] = True
    except Exception:  # noqa: BLE001, S110 - MLflow skips a failed pricing too
        pass
    return found


def _b64(number: int, length: int) -> str:
    """``base64.b64encode(number.to_bytes(length, "big")).decode()``, as ``Span.to_dict`` makes ids."""
    return _b2a(number.to_bytes(length, "big"), newline=False).decode()


def trace_views(trace: TraceRecord) -> list[SpanView]:
    """Views of every span of a materialized trace, as ``log_spans(to_mlflow_spans(trace))`` computes them."""
    from dspy_tracekit.mlflow.translate import _encode, span_attribute_values, to_mlflow_spans

    _dumps = _Direct.dumps
    if _dumps is None:
        from dspy_tracekit.mlflow.translate import _dumps as slow

        _dumps = _Direct.dumps = c_encoder(_encode.__self__) or slow

    if not _Direct.checked:
        self_check(trace)
    if not _Direct.on:
        return [view_of_span(span) for span in to_mlflow_spans(trace)]
    from mlflow.entities import SpanStatusCode

    template, strips, texts = _Direct.template, _Direct.strips, _Direct.texts
    float_repr, int_repr, isfinite = float.__repr__, int.__repr__, math.isfinite
    ok = SpanStatusCode.OK
    tid = trace.trace_id
    trace_id = trace.mlflow_trace_id
    b64_trace = _b64(tid, 16)
    known = {s.span_id for s in trace.spans}
    root = trace.root
    encoded_trace_id = _dumps(trace_id)
    views: list[SpanView] = []
    slow: list[int] = []
    ids: dict[int, tuple[str, str]] = {}  # span id -> (hex, base64): a parent's are its own
    new_view = functools.partial(tuple.__new__, SpanView)
    for s in trace.spans:
        values = span_attribute_values(trace, s)
        if not _is_plain(s, values):
            slow.append(len(views))
            views.append(None)  # type: ignore[arg-type] - filled below from MLflow's translation
            continue
        attrs: dict[str, str] = {}
        for key, value in values.items():
            if key is _REQUEST_ID:  # span_attribute_values' own key object (an equal one takes the path below)
                attrs[key] = encoded_trace_id
            elif value.__class__ is str:
                # a string's stored text depends on the string alone: short ones (types, kinds, paths,
                # tag values) repeat in every trace
                enc = texts.get(value)
                if enc is None:
                    enc = _dumps(value)
                    if strips and value.lstrip(_JSON_WS)[:1] in _JSON_OPENERS:
                        enc = sanitized(enc, value)
                    if len(value) <= _MEMO_STR_LEN:
                        if len(texts) >= _MEMO_SIZE:
                            texts.clear()
                        texts[value] = enc
                attrs[key] = enc
            elif value.__class__ is float and isfinite(value):
                attrs[key] = float_repr(value)  # what the C encoder writes for a finite float
            elif value.__class__ is int:
                attrs[key] = int_repr(value)
            else:
                enc = _dumps(value)
                attrs[key] = sanitized(enc, value) if strips and enc[:1] == '"' else enc
        if _MODEL not in attrs and ('"model"' in attrs.get(_INPUTS, "") or '"model"' in attrs.get(_OUTPUTS, "")):
            slow.append(len(views))  # MLflow reads a model name out of such inputs/outputs
            views.append(None)  # type: ignore[arg-type]
            continue
        if _COST not in attrs and _USAGE in attrs and _MODEL in attrs:
            # as translate_span_when_storing: MLflow prices the call itself when nobody did
            cost_text = _price(attrs[_MODEL], attrs[_USAGE], attrs.get(_PROVIDER))
            if cost_text is not None:
                attrs[_COST] = cost_text
        parent_id = s.parent_id if s.parent_id in known else None
        if parent_id is None and s is not root and root is not None:
            parent_id = root.span_id
        end_ns = s.end_ns if s.end_ns is not None else s.start_ns
        # MLflow's Span.to_dict key order, with its values for a plain span where they are not ours
        span_dict = template.copy()
        span_dict["trace_id"] = b64_trace
        hex_id, b64_id = ids[s.span_id] = f"{s.span_id:016x}", _b64(s.span_id, 8)
        if parent_id is None:
            hex_parent = b64_parent = None
        else:
            hex_parent, b64_parent = ids.get(parent_id) or (f"{parent_id:016x}", _b64(parent_id, 8))
        span_dict["span_id"] = b64_id
        span_dict["parent_span_id"] = b64_parent
        span_dict["name"] = s.name
        span_dict["start_time_unix_nano"] = s.start_ns
        span_dict["end_time_unix_nano"] = end_ns
        span_dict["attributes"] = attrs
        views.append(new_view((trace_id, hex_id, hex_parent, s.name, s.span_type or "UNKNOWN", ok, s.start_ns,
                               end_ns, span_dict, False, True)))
    if slow:
        spans = to_mlflow_spans(trace)
        for i in slow:
            views[i] = view_of_span(spans[i])
    return views


def _span_dict_template() -> tuple:
    """What MLflow's ``Span.to_dict()`` makes of a plain span (MLflow 3.18 added ``kind``, for one)."""
    from dspy_tracekit.mlflow.translate import to_mlflow_spans

    probe = TraceRecord(trace_id=1)
    span = SpanRecord(probe, None, "probe", SpanKind.MODULE, "CHAIN", start_ns=1)
    span.end_ns = 2
    span.outputs = '{"probe": 1}'  # a string that is JSON: does MLflow strip one layer of encoding?
    span.materialized = True
    probe.root = span
    probe.spans.append(span)
    mlflow_span = to_mlflow_spans(probe)[0]
    from mlflow.tracing.otel.translation import translate_span_when_storing

    # MLflow 3.17 strips it (sanitize_attributes), 3.18 no longer does (moved to its OTLP endpoint)
    _Direct.strips = translate_span_when_storing(mlflow_span)["attributes"][_OUTPUTS] == span.outputs
    template = mlflow_span.to_dict()
    missing = {"trace_id", "span_id", "parent_span_id", "name", "start_time_unix_nano", "end_time_unix_nano",
               "attributes"} - set(template)
    if missing:
        raise RuntimeError(f"Span.to_dict() lacks {sorted(missing)}")
    return template


def _comparable(view: SpanView) -> tuple:
    return (view.trace_id, view.span_id, view.parent_id, view.name, view.span_type, str(view.status_code),
            view.start_ns, view.end_ns, json.dumps(view.span_dict, default=str, ensure_ascii=False))


def self_check(trace: TraceRecord) -> bool:
    """Compare the direct views of ``trace`` with MLflow's translation; turn the direct way off on a difference."""
    from dspy_tracekit.mlflow.translate import to_mlflow_spans

    with _Direct.lock:
        if _Direct.checked:
            return _Direct.on
        _Direct.checked = True
    try:
        _Direct.reads = _probe_translators()
        _Direct.template = _span_dict_template()
        direct = trace_views(trace)
        reference = [view_of_span(span) for span in to_mlflow_spans(trace)]
        from mlflow.tracing.utils import TraceJSONEncoder

        contents = [(content_encoder(TraceJSONEncoder(ensure_ascii=ascii)), TraceJSONEncoder(ensure_ascii=ascii))
                    for ascii in (False, True)]
        for mine, theirs in zip(direct, reference):
            # the content column as the store writes it: from fragments, and as MLflow encodes it
            same_content = not mine.direct or all(
                content is None or content(mine.span_dict) == encoder.encode(theirs.span_dict)
                for content, encoder in contents)
            if _comparable(mine) != _comparable(theirs) or not same_content:
                _Direct.on = False
                logger.warning("dspy-tracekit: MLflow translates span %r differently from tracekit's direct "
                               "translation; using MLflow's translation for every span (slower)", theirs.name)
                break
    except Exception as exc:  # noqa: BLE001 - the direct way is an optimisation: off when in doubt
        _Direct.on = False
        logger.warning("dspy-tracekit: direct span translation failed its self-check (%s: %s); using "
                       "MLflow's translation", type(exc).__name__, exc)
    return _Direct.on
