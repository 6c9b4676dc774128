"""The API baseline against a chat-completions server on 127.0.0.1 that the test starts (no other address)."""

import json

import pytest

from sepit_baselines.api import ApiError, ApiModel, RetrySettings
from sepit.cli import main
from sepit.data.protein import make_protein
from sepit.data.sample import make_sample
from sepit.models.formatters import sequence_prompt
from sepit.interface import GenerationSettings
from local_server import QuietHandler, bypass_proxy, start

KEY = "sk-test-do-not-log-4242"


class FakeServer:
    """Answers `answer <n>`; the first `failures` requests get HTTP `status` instead."""

    def __init__(self):
        self.requests, self.failures, self.status = [], 0, 500
        server = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                        "body": body})
                if server.failures > 0:
                    server.failures -= 1
                    self.send_response(server.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "overloaded"}')
                    return
                reply = {"choices": [{"message": {"role": "assistant",
                                                  "content": f"answer {len(server.requests)}"}}]}
                payload = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd, self.url = start(Handler)


@pytest.fixture
def server(monkeypatch):
    bypass_proxy(monkeypatch)
    fake = FakeServer()
    yield fake
    fake.httpd.shutdown()


def _samples():
    return [make_sample("a", "t", make_protein("a", "MKTAYIAKQR"), "What does <protein> do?", "binds dna"),
            make_sample("b", "t", make_protein("b", "GSHM"), "Is <protein> an enzyme?", "no", ["yes", "no"])]


def _model(server, tmp_path, **options):
    return ApiModel("tiny-chat", base_url=server.url, api_key=KEY, sequence_format="galactica",
                    retries=RetrySettings(retry_wait=0.0, requests_per_minute=1e9, **options),
                    cache_dir=str(tmp_path / "cache"))


def test_formatters_write_the_sequence_where_the_placeholder_was():
    sample = _samples()[1]
    assert sequence_prompt(sample, "galactica") == "Is [START_AMINO]GSHM[END_AMINO] an enzyme?"
    assert sequence_prompt(sample, "seq_equals") == "Is Seq=<GSHM> an enzyme?"
    assert sequence_prompt(sample, "raw", max_residues=2) == "Is GS an enzyme?"
    marker = "SPL1T-TH1S-Pl3A5E"  # Galactica's tokenizer splits here and drops the marker: one token per residue
    assert sequence_prompt(sample, "galactica_split", max_residues=2) == f"Is [START_AMINO]{marker}G{marker}S[END_AMINO] an enzyme?"
    with pytest.raises(ValueError, match="unknown sequence format 'fasta'"):
        sequence_prompt(sample, "fasta")


def test_request_reaches_the_server_and_a_second_run_is_served_from_the_cache(server, tmp_path):
    config = GenerationSettings(max_new_tokens=12)
    answers = _model(server, tmp_path).generate(_samples(), config)
    assert answers == ["answer 1", "answer 2"]
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == f"Bearer {KEY}"
    assert first["body"]["model"] == "tiny-chat" and first["body"]["max_tokens"] == 12
    assert first["body"]["temperature"] == 0.0  # greedy
    assert first["body"]["messages"][-1] == {"role": "user",
                                            "content": "What does [START_AMINO]MKTAYIAKQR[END_AMINO] do?"}
    again = _model(server, tmp_path).generate(_samples(), config)
    assert again == answers and len(server.requests) == 2  # nothing sent the second time
    cached = "".join(p.read_text() for p in (tmp_path / "cache").glob("*.json"))
    assert KEY not in cached


def test_server_errors_are_retried_then_reported_clearly(server, tmp_path):
    server.failures = 2
    assert _model(server, tmp_path, max_retries=2).generate(_samples()[:1], GenerationSettings()) == ["answer 3"]
    assert len(server.requests) == 3

    server.failures = 10
    with pytest.raises(ApiError) as error:
        _model(server, tmp_path, max_retries=2).generate(_samples()[1:], GenerationSettings())
    assert len(server.requests) == 6  # 1 + 2 retries
    message = str(error.value)
    assert "request failed after 3 attempts" in message and "HTTP 500" in message and server.url in message
    assert KEY not in message


def test_client_errors_are_not_retried(server, tmp_path):
    server.failures, server.status = 5, 401
    with pytest.raises(ApiError, match="HTTP 401.*Check the model name, the key"):
        _model(server, tmp_path).generate(_samples()[:1], GenerationSettings())
    assert len(server.requests) == 1


def test_bench_with_the_api_model_keeps_the_key_out_of_every_file(server, tmp_path):
    args = json.dumps({"model": "tiny-chat", "base_url": server.url, "api_key": KEY,
                       "retries": {"retry_wait": 0.0, "requests_per_minute": 1e9}, "cache_dir": str(tmp_path / "cache")})
    main(["bench", "--model", "api", "--model_args", args, "--tasks", "sp14_membrane", "--limit", "3",
          "--output", str(tmp_path / "run"), "--scoring.n_resamples", "20", "--scoring.leakage", "false"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"]["modality"] == "api" and results["model"]["params_total"] is None
    assert results["tasks"]["sp14_membrane"]["n"] == 3 and len(server.requests) == 3
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(), path
