import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lightning_ssd.metrics import JudgedScore, JudgeError, OpenAICompatibleJudge

KEY_ENV = "LIGHTNING_SSD_TEST_JUDGE_KEY"


def _completion(content: str) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }


class _ChatHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        status, payload = self.server.reply(body["messages"][-1]["content"])
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server(monkeypatch):
    """A canned chat-completions server on 127.0.0.1; it shuts itself down after 30 s whatever happens."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    server.requests = []
    server.reply = lambda prompt: (200, _completion("1.0"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    deadline = threading.Timer(30.0, server.shutdown)
    deadline.daemon = True
    deadline.start()
    yield server
    deadline.cancel()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _judge(server, **kwargs) -> OpenAICompatibleJudge:
    return OpenAICompatibleJudge(f"http://127.0.0.1:{server.server_address[1]}", "judge-model", KEY_ENV, 5.0, **kwargs)


def _by_prediction(replies: dict[str, tuple[int, object]]):
    def reply(prompt: str):
        return next(answer for prediction, answer in replies.items() if prediction in prompt)

    return reply


def test_mm_vet_score_is_the_mean_correctness_x100(chat_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    chat_server.reply = _by_prediction(
        {
            "PRED-A": (200, _completion("1.0")),
            "PRED-B": (200, _completion("0.4")),
            "PRED-C": (200, _completion(" 0.1\n")),
        }
    )
    metric = JudgedScore("mm-vet", judge=_judge(chat_server), retry_wait_s=0.0)
    metric.update(["q1", "q2"], ["PRED-A", "PRED-B"], ["r1", "r2 <AND> r3"], categories=["ocr", "rec"])
    metric.update(["q3"], ["PRED-C"], ["r4"], categories=["ocr"])
    result = metric.compute()
    assert result["score"] == pytest.approx(100 * (1.0 + 0.4 + 0.1) / 3)
    assert result["per_category"] == pytest.approx({"ocr": 55.0, "rec": 40.0})
    assert (result["num_samples"], result["num_judged"], result["num_failed"]) == (3, 3, 0)
    request = chat_server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "judge-model" and request["body"]["temperature"] == 0.0
    prompt = request["body"]["messages"][-1]["content"]
    assert "Question | Ground truth | Prediction | Correctness" in prompt and prompt.endswith(" |")


def test_llava_wild_score_is_prediction_over_reference_x100(chat_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    chat_server.reply = _by_prediction(
        {"PRED-A": (200, _completion("8 6\nAssistant 1 is more detailed.")), "PRED-B": (200, _completion("9, 9\nTie."))}
    )
    metric = JudgedScore("llava-wild", judge=_judge(chat_server), retry_wait_s=0.0)
    metric.update(["q1", "q2"], ["PRED-A", "PRED-B"], ["ref1", "ref2"], ["conv", "detail"], ["a red car", ""])
    result = metric.compute()
    assert result["score"] == pytest.approx(100 * (6 + 9) / (8 + 9))
    assert result["per_category"] == pytest.approx({"conv": 75.0, "detail": 100.0})
    prompts = {r["body"]["messages"][-1]["content"] for r in chat_server.requests}
    with_context = next(p for p in prompts if "PRED-A" in p)
    assert "[Context]\na red car" in with_context and "[Assistant 1]\nref1" in with_context
    assert all(r["auth"] == "Bearer EMPTY" for r in chat_server.requests)  # no key set: the client's placeholder


def test_unparsable_replies_and_server_errors_are_counted_per_sample(chat_server):
    chat_server.reply = _by_prediction(
        {
            "PRED-OK": (200, _completion("0.5")),
            "PRED-WORDS": (200, _completion("The answer is mostly right.")),
            "PRED-RANGE": (200, _completion("7")),
            "PRED-500": (500, b'{"error": "overloaded"}'),
            "PRED-JUNK": (200, b"not json"),
        }
    )
    metric = JudgedScore("mm-vet", judge=_judge(chat_server), max_attempts=2, retry_wait_s=0.0)
    preds = ["PRED-OK", "PRED-WORDS", "PRED-RANGE", "PRED-500", "PRED-JUNK"]
    metric.update(["q"] * 5, preds, ["r"] * 5)
    result = metric.compute()
    assert result["score"] == pytest.approx(50.0)  # over the judged sample only, never a made-up 0
    assert (result["num_judged"], result["num_failed"]) == (1, 4)
    errors = {f["index"]: f["error"] for f in result["failures"]}
    assert "not a number" in errors[1] and "outside [0, 1]" in errors[2]
    assert "HTTP 500" in errors[3] and "no chat completion" in errors[4]
    assert len(chat_server.requests) == 1 + 2 * 4  # each failure tried max_attempts times


def test_llava_reply_without_two_scores_fails_the_sample(chat_server):
    chat_server.reply = lambda prompt: (200, _completion("Assistant 2 is better."))
    metric = JudgedScore("llava-wild", judge=_judge(chat_server), max_attempts=1)
    metric.update(["q"], ["p"], ["r"])
    result = metric.compute()
    assert result["score"] is None and result["num_failed"] == 1
    assert "two scores" in result["failures"][0]["error"]


def test_rejected_key_stops_judging_with_a_clear_error(chat_server):
    chat_server.reply = lambda prompt: (401, b'{"error": "invalid api key"}')
    metric = JudgedScore("mm-vet", judge=_judge(chat_server), num_workers=1)
    metric.update(["q"] * 5, ["p"] * 5, ["r"] * 5)
    with pytest.raises(JudgeError, match=rf"HTTP 401 \(is \${KEY_ENV} set and valid\?\).*invalid api key"):
        metric.compute()
    assert len(chat_server.requests) < 5  # the rest were not sent


def test_unreachable_judge_fails_samples_not_the_run():
    judge = OpenAICompatibleJudge("http://127.0.0.1:9/v1/", "m", KEY_ENV, timeout_s=2.0)  # discard port: refused
    assert judge.url == "http://127.0.0.1:9/v1/chat/completions"
    metric = JudgedScore("mm-vet", judge=judge, max_attempts=1)
    metric.update(["q"], ["p"], ["r"])
    result = metric.compute()
    assert result["score"] is None and "could not be reached" in result["failures"][0]["error"]


def test_without_a_judge_there_is_no_number():
    metric = JudgedScore("llava-wild")
    metric.update(["q"], ["p"], ["r"])
    assert metric.compute() == {"needs_judge": True, "num_samples": 1}


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_empty_and_bad_inputs():
    with pytest.raises(ValueError, match="no samples"):
        JudgedScore("mm-vet").compute()
    with pytest.raises(ValueError, match="task must be one of"):
        JudgedScore("mmvet")
    with pytest.raises(ValueError, match="references must be a list of 2 strings"):
        JudgedScore("mm-vet").update(["q", "q"], ["p", "p"], ["r"])
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAICompatibleJudge("file:///etc/passwd", "m")
