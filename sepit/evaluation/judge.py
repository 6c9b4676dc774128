"""An LLM judge of open-ended answers: a chat model grades each answer against its reference with a versioned
rubric (`rubrics/default.md`), for `--scoring.judge '{model: ..., base_url: ...}'` in `sepit bench` and
`sepit score` (docs/evaluation.md, "LLM judge").

Scoring (`score_rows`) asks it for the rows of each open task; `score_task` turns the grades into the task's
`judge_score` and `judge_failure` metrics and the per-sample logs. The requests go through the `api` baseline's
client (`sepit.chat_client`: retries honouring Retry-After, rate limit, the key sent in the Authorization
header and nowhere else). Each verdict is cached on disk, atomically and as it arrives, under (judge model,
rubric version, prompt hash): an interrupted run resumes where it stopped, a re-run costs nothing, and a prompt
asked twice in a run is sent once. Before any call the judge prints how many calls are left to make.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from sepit.cache import cache_dir as default_cache_dir
from sepit.chat_client import ChatClient, RetrySettings
from sepit.data.files import atomic_open
from sepit.errors import InputError
from sepit.metrics.bootstrap import weighted_mean

RUBRICS = Path(__file__).parent / "rubrics"
MAX_TOKENS = 256  # a one-line reason fits with room to spare
REPLY_FORMAT = '{"score": <integer 0-10>, "reason": "<one line saying why>"}'


@dataclass(frozen=True)
class JudgeSettings:
    """Which model judges, where, and by which rubric. The key is read from the environment variable
    `api_key_env` only, so it never sits in a command line, a config or a results file.

    Args:
        model: the judge model's name as the API expects it.
        base_url: the API root; `/chat/completions` is appended.
        rubric: a rubric shipped in sepit/evaluation/rubrics (`default`) or a path to a rubric file (Markdown whose
            first line is `version: NAME`).
        api_key_env: the environment variable holding the key; without it no Authorization header is sent.
        retries: max_retries, retry_wait, requests_per_minute and timeout of the client (`RetrySettings`, or a dict).
        cache_dir: where verdicts and replies are cached (default $SEPIT_CACHE/judge).
    """

    model: str
    base_url: str = "https://api.openai.com/v1"
    rubric: str = "default"
    api_key_env: str = "OPENAI_API_KEY"
    retries: RetrySettings = RetrySettings()
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retries, dict):
            known = {f.name for f in dataclasses.fields(RetrySettings)}
            unknown = set(self.retries) - known
            if unknown:
                raise InputError("--scoring.judge.retries", f"has no setting {', '.join(map(repr, sorted(unknown)))}",
                                 f"Set {', '.join(sorted(known))}.")
            object.__setattr__(self, "retries", RetrySettings(**self.retries))


class Rubric(NamedTuple):
    name: str
    version: str
    text: str  # the instructions, without the version line


def load_rubric(name: str) -> Rubric:
    """A shipped rubric by name, or a rubric file by path; its first line names its version."""
    path = RUBRICS / f"{name}.md" if re.fullmatch(r"[\w-]+", name) else Path(name)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RUBRICS.glob("*.md")))
        raise InputError("--scoring.judge.rubric", f"no rubric {name!r}",
                         f"Name a shipped rubric ({shipped}) or give the path of a rubric file.")
    head, _, text = path.read_text(encoding="utf-8").partition("\n")
    version = re.fullmatch(r"version:\s*(\S+)\s*", head)
    if not version:
        raise InputError(str(path), "a rubric's first line must name its version",
                         "Start the file with e.g. `version: my-rubric-v1`; change it whenever the text changes.")
    return Rubric(name, version[1], text.strip())


class Verdict(NamedTuple):
    """One judgement: a grade 0-10 and its reason, or the failure (two malformed replies) and why."""

    score: int | None
    reason: str | None
    error: str | None = None


def parse_reply(reply: str) -> tuple[Verdict | None, str | None]:
    """(verdict, None) for a reply that is exactly {"score": 0-10 integer, "reason": one line}, surrounding
    whitespace allowed; (None, what is wrong) for anything else."""
    try:
        value = json.loads(reply)
    except json.JSONDecodeError as err:
        return None, f"it is not JSON ({err.msg})"
    if not isinstance(value, dict) or set(value) != {"score", "reason"}:
        return None, 'it is not an object with exactly the keys "score" and "reason"'
    score, reason = value["score"], value["reason"]
    if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 10:
        return None, f"score {score!r} is not an integer from 0 to 10"
    if not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip():
        return None, "reason is not one line of text"
    return Verdict(score, reason.strip()), None


class Judge:
    """Grades (question, reference, answer) triples with one judge model and rubric, through a cached client."""

    def __init__(self, settings: JudgeSettings):
        self.settings, self.rubric = settings, load_rubric(settings.rubric)
        root = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir() / "judge"
        self.verdicts = root / "verdicts"
        self.client = ChatClient(settings.base_url, None, settings.api_key_env, settings.retries, root / "replies")

    def record(self) -> dict:
        """What results.json says of the judge (never the key)."""
        return {"model": self.settings.model, "base_url": self.settings.base_url, "rubric": self.rubric.name,
                "rubric_version": self.rubric.version, "temperature": 0.0, "max_tokens": MAX_TOKENS}

    def messages(self, question: str | None, reference: str, answer: str) -> list[dict]:
        prompt = (f"Question: {question if question is not None else '(not given)'}\n"
                  f"Reference answer: {reference}\nAnswer to grade: {answer}")
        return [{"role": "system", "content": self.rubric.text}, {"role": "user", "content": prompt}]

    def key(self, messages: list[dict]) -> str:
        """The cache key: (judge model, rubric version, prompt hash), the prompt being the messages sent."""
        prompt_hash = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        return hashlib.sha256(json.dumps([self.settings.model, self.rubric.version, prompt_hash]).encode()).hexdigest()

    def estimate(self, tasks: Mapping[str, tuple[Sequence[dict], Mapping[str, str]]]) -> None:
        """Print, before any call, what judging these open tasks' rows ({task: (rows, questions)}) will cost:
        the distinct prompts of the whole run and how many of them are not cached yet."""
        keys = {self.key(self.messages(questions.get(row["id"]), row["reference"], row["prediction"]))
                for rows, questions in tasks.values() for row in rows}
        todo = sum(not (self.verdicts / f"{key}.json").is_file() for key in keys)
        answers = sum(len(rows) for rows, _ in tasks.values())
        print(f"LLM judge {self.settings.model} ({self.rubric.version}), whole run: {answers} answers in "
              f"{len(tasks)} open tasks, {len(keys)} distinct prompts, {todo} calls to make (one more for each "
              "malformed reply)", flush=True)

    def judge(self, items: Sequence[tuple[str | None, str, str]], label: str = "") -> list[Verdict]:
        """A verdict per (question, reference, answer): cached ones read, the others asked once each, in order."""
        from tqdm.auto import tqdm

        prompts = [self.messages(*item) for item in items]
        keys = [self.key(messages) for messages in prompts]
        distinct = dict(zip(keys, prompts))
        verdicts = {key: self._cached(key) for key in distinct}
        todo = [key for key, verdict in verdicts.items() if verdict is None]
        print(f"LLM judge {self.settings.model} ({self.rubric.version}){' on ' + label if label else ''}: "
              f"{len(items)} answers, {len(distinct)} distinct prompts, {len(distinct) - len(todo)} cached, "
              f"{len(todo)} calls to make (one more for each malformed reply)", flush=True)
        for key in tqdm(todo, desc=f"judging {label}".strip(), unit="answer", disable=not todo):
            verdicts[key] = self._ask(key, distinct[key])
        return [verdicts[key] for key in keys]

    def _cached(self, key: str) -> Verdict | None:
        path = self.verdicts / f"{key}.json"
        if not path.is_file():
            return None
        saved = json.loads(path.read_text(encoding="utf-8"))
        return Verdict(saved["score"], saved["reason"], saved["error"])

    def _ask(self, key: str, messages: list[dict]) -> Verdict:
        """Ask; a malformed reply is asked again once, in a follow-up naming the problem (a new request, so not
        the cached malformed reply), then counts as a failure."""
        body = {"model": self.settings.model, "messages": messages, "temperature": 0.0, "max_tokens": MAX_TOKENS}
        replies = [self.client.complete(body)]
        verdict, problem = parse_reply(replies[0])
        if verdict is None:
            retry = {**body, "messages": [*messages, {"role": "assistant", "content": replies[0]},
                                          {"role": "user", "content": f"Your reply could not be read: {problem}. "
                                                                      f"Reply with only the object {REPLY_FORMAT}."}]}
            replies.append(self.client.complete(retry))
            verdict, second = parse_reply(replies[1])
            if verdict is None:
                verdict = Verdict(None, None, f"two malformed replies: {problem}; then {second}")
        self.verdicts.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.verdicts / f"{key}.json") as handle:
            json.dump({"model": self.settings.model, "rubric_version": self.rubric.version, **verdict._asdict(),
                       "replies": replies}, handle)
        return verdict

    def judge_rows(self, task: str, rows: Sequence[dict], questions: Mapping[str, str]) -> dict[str, Verdict]:
        """Verdicts by sample id for an open task's rows; `questions`: each sample's instruction, where known."""
        items = [(questions.get(row["id"]), row["reference"], row["prediction"]) for row in rows]
        return dict(zip((row["id"] for row in rows), self.judge(items, task)))


def judge_statistics(verdicts: Sequence[Verdict]):
    """(metrics(W) -> {judge_score, judge_failure}, per-sample log fields) for one task's verdicts in row order.
    judge_score is ten times the mean grade over the answers judged (0-100, like every other metric); failures
    are left out of it and counted in judge_failure (percent of answers), never scored 0."""
    failed = np.array([v.score is None for v in verdicts], dtype=float)
    grades = np.array([10.0 * v.score if v.score is not None else 0.0 for v in verdicts])

    def metrics(W: np.ndarray) -> dict[str, np.ndarray]:
        judged = W * (1.0 - failed)  # (B, n)
        return {"judge_score": weighted_mean(grades, judged), "judge_failure": 100.0 * weighted_mean(failed, W)}

    logs = [{"judge_score": None if v.score is None else 10.0 * v.score, "judge_reason": v.reason,
             **({"judge_error": v.error} if v.error else {})} for v in verdicts]
    return metrics, logs
