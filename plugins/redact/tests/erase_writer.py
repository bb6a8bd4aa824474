"""A program that writes traces of one user and exits: one run = one process (a "restart" between runs).

``python erase_writer.py URI EXPERIMENT USER_ID SESSION_ID N``
"""

import sys

import dspy

import dspy_tracekit as tk


class Ask(dspy.Module):
    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict("question -> answer")

    def forward(self, question):
        return self.predict(question=question)


def main() -> None:
    uri, experiment, user_id, session_id, n = sys.argv[1:6]
    tk.enable(plugins=["redact"], tracking_uri=uri, experiment=experiment)
    lm = dspy.utils.DummyLM([{"answer": "ok"}] * int(n))
    with dspy.context(lm=lm), tk.context(user_id=user_id, session_id=session_id, tenant="acme"):
        for i in range(int(n)):
            Ask()(question=f"question {i} from {user_id}")
    assert tk.flush(120)
    c = tk.counters()
    assert c.get("core.traces_exported") == int(n), c
    tk.disable()


if __name__ == "__main__":
    main()
