"""Credentials never reach the store, even with no plugin enabled."""

from __future__ import annotations

import dspy

import dspy_tracekit as tk

SECRETS = {
    "api_key": "sk-proj-VERYSECRETKEY1234567890abcdef",
    "password": "hunter2-very-secret",
    "auth": "Bearer tok_SECRET_bearer_value_998877",
    "aws": "AKIAEXAMPLESECRET1234",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


def test_lm_credentials_are_absent_from_the_raw_store_file(fresh_store_uri, tmp_path):
    tk.enable(plugins=[], tracking_uri=fresh_store_uri, experiment="secrets")
    lm = dspy.LM("openai/gpt-4o-mini", cache=False, api_key=SECRETS["api_key"],
                 api_base=f"https://svc-user:{SECRETS['password']}@llm.internal.example/v1",
                 extra_headers={"Authorization": SECRETS["auth"]},
                 aws_access_key_id=SECRETS["aws"], aws_secret_access_key=SECRETS["aws_secret"],
                 mock_response="[[ ## intent ## ]]\nother\n\n[[ ## completed ## ]]")
    dspy.configure(lm=lm)
    dspy.Predict("message -> intent")(message="hello")

    def tool_with_token(token: str, query: str) -> str:
        """A tool that takes a credential argument."""
        return f"ok {query}"

    dspy.Tool(tool_with_token)(token="ghp_SECRETTOKENVALUE0123456789abcdefABCD", query="q")
    assert tk.flush(30)
    assert tk.counters()["core.traces_exported"] == 2
    tk.disable()
    raw = (tmp_path / "own.db").read_bytes()
    assert b"llm.internal.example" in raw  # the host is kept, only the userinfo goes
    for value in [*SECRETS.values(), "ghp_SECRETTOKENVALUE0123456789abcdefABCD"]:
        assert value.encode() not in raw, value
        assert value.replace("/", "\\/").encode() not in raw, value
