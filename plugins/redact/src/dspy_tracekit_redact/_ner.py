"""Optional Presidio backend for names, addresses and locations (``ner = true``; extra ``[ner]``).

Off by default: it needs ``presidio-analyzer`` and a spaCy model, and it is two orders of magnitude
slower than the regex detectors.
"""

from __future__ import annotations

from collections.abc import Iterator

#: Presidio entity → our entity type.
NER_ENTITIES = {"PERSON": "PERSON", "LOCATION": "LOCATION", "NRP": "NRP", "ADDRESS": "ADDRESS"}


class NerBackend:
    def __init__(self, entities: list[str] | None, score: object):
        try:
            from presidio_analyzer import AnalyzerEngine
        except ImportError as exc:
            # no ``[ner]`` extra: presidio-analyzer caps numpy below 2.5 for every install of the
            # workspace (see the README), so it is installed by the user
            raise ValueError(
                "redact.ner: true needs the package 'presidio-analyzer', which is not installed "
                f"({type(exc).__name__}: {exc}); install it with 'pip install presidio-analyzer' and a "
                "spaCy model ('python -m spacy download en_core_web_lg'), or set ner = false") from exc
        wanted = entities or ["PERSON", "LOCATION"]
        for i, name in enumerate(wanted):
            if name not in NER_ENTITIES:
                raise ValueError(f"redact.ner_entities[{i}]: unknown NER entity {name!r} "
                                 f"(known: {', '.join(NER_ENTITIES)})")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise ValueError(f"redact.ner_score: must be a number between 0 and 1, got {score!r}")
        self.entities = [NER_ENTITIES[n] for n in wanted]
        self._presidio_entities = list(wanted)
        self._score = float(score)
        try:
            self._engine = AnalyzerEngine()
        except Exception as exc:
            raise ValueError(f"redact.ner: Presidio could not start: {type(exc).__name__}: {exc}") from exc

    def find(self, text: str) -> Iterator[tuple[int, int, str]]:
        for r in self._engine.analyze(text=text, entities=self._presidio_entities, language="en"):
            if r.score >= self._score:
                yield r.start, r.end, NER_ENTITIES[r.entity_type]
