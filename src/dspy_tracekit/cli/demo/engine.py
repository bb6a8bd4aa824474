"""An offline, deterministic LM engine for the demo: sensible intents, realistic token usage.

Plugged into a real ``dspy.LM`` (``engine=IntentEngine()``), so calls go through DSPy's own LM
path, adapters, usage accounting and history — only the network is replaced.
"""

from __future__ import annotations

import re
import time

from dspy.lm15 import Message, Response, TextPart, Usage

INTENT_KEYWORDS = {
    "create_workflow": ("create", "new workflow", "build", "set up", "automate", "workflow"),
    "run_agent": ("run", "start the agent", "execute", "launch", "trigger", "agent"),
    "view_reports": ("report", "dashboard", "metrics", "analytics", "show me", "chart"),
    "manage_users": ("user", "permission", "role", "invite", "remove", "access"),
}

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\Z)", re.S)


def _tokens(text: str) -> int:
    # about four characters per token for English prose, as with OpenAI's tokenizers
    return max(1, (len(text) + 3) // 4)


class IntentEngine:
    """``complete(Request) -> Response`` for a ChatAdapter prompt of the intent signature."""

    def __init__(self, latency_ms: float = 0.0):
        self.latency_ms = latency_ms

    def complete(self, request):
        system = request.system if isinstance(request.system, str) else "".join(
            getattr(p, "text", "") for p in (request.system or ()))
        user = request.messages[-1].text or ""
        fields = dict(_FIELD.findall(user))
        message = fields.get("message", user).strip()
        role = fields.get("user_role", "").strip()
        intent, confidence, why = classify(message, role)
        text = (f"[[ ## reasoning ## ]]\n{why}\n\n[[ ## intent ## ]]\n{intent}\n\n"
                f"[[ ## confidence ## ]]\n{confidence}\n\n[[ ## completed ## ]]")
        prompt_tokens = _tokens(system) + sum(_tokens(m.text or "") for m in request.messages)
        completion_tokens = _tokens(text)
        if self.latency_ms:
            time.sleep((self.latency_ms + completion_tokens * 0.2) / 1000.0)
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop",
                        usage=Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens,
                                    total_tokens=prompt_tokens + completion_tokens))

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self):
        pass


def classify(message: str, role: str) -> tuple[str, float, str]:
    low = message.lower()
    scores = {intent: sum(1 for k in keys if k in low) for intent, keys in INTENT_KEYWORDS.items()}
    best = max(scores, key=scores.get)
    if scores[best] == 0:
        if any(ch.isalpha() for ch in low) and len(low.split()) >= 3:
            return "other", 0.55, "The message does not ask for any admin-console action."
        # garbled input: the model answers with a label outside the allowed set
        return "unclear", 0.2, "The message is too short or garbled to classify."
    confidence = round(min(0.98, 0.6 + 0.15 * scores[best]), 2)
    if best == "manage_users" and role not in ("admin", "owner"):
        return best, round(confidence - 0.3, 2), f"Asks to manage users, but role '{role}' is not an admin."
    return best, confidence, f"The message mentions {best.replace('_', ' ')} terms."
