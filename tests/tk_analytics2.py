"""Programs and runs shared by the analytics v2 tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import time

import dspy

import dspy_tracekit as tk
from dspy_tracekit import versioning

ANSWER = "[[ ## answer ## ]]\n{}\n\n[[ ## completed ## ]]"


class QA(dspy.Signature):
    """Answer the question."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class QAProgram(dspy.Module):
    def __init__(self, delay=0.0):
        super().__init__()
        self.qa = dspy.Predict(QA)
        self.delay = delay

    def forward(self, question):
        if self.delay:
            time.sleep(self.delay)
        return self.qa(question=question)


def mock_lm(model):
    return dspy.LM(model, cache=False, api_key="x", mock_response=ANSWER.format("4"))


def run_two_versions(store_uri, experiment_name, n=14):
    """``n`` requests each of two versions: B sleeps 30 ms more and calls a pricier model, same tokens."""
    tk.enable(plugins=["cost"], tracking_uri=store_uri, experiment=experiment_name)
    fast, slow = QAProgram(), QAProgram(delay=0.03)
    fast.qa.lm = mock_lm("openai/gpt-4o-mini")
    slow.qa.lm = mock_lm("openai/gpt-4o")
    slow.qa.signature = slow.qa.signature.with_instructions("Answer the question carefully.")
    for i in range(n):
        fast(question=f"q{i}")
        slow(question=f"q{i}")
    tk.flush(30)
    return versioning.version_of(fast), versioning.version_of(slow)


def trainset(n=6):
    return [dspy.Example(question=f"q{i}", answer=str(i % 2)).with_inputs("question") for i in range(n)]


def exact(example, prediction, trace=None, *args, **kwargs):
    return float(str(getattr(prediction, "answer", "")).strip() == example.answer)


def answers(n=400):
    """Half right, half wrong, so candidates differ in score."""
    return dspy.utils.DummyLM([{"answer": str(i % 3 % 2)} for i in range(n)])
