"""`sepit demo`: the plan covers SEPIT, its no-structure ablation and every baseline; finished steps are skipped
on a re-run, a failed step stops with its command, and --fresh starts over. The steps themselves (`sepit
fit`, `sepit bench`) are tested elsewhere; here they are replaced by a recorder."""

import json
import subprocess

import pytest

from sepit.commands import demo as demo_module
from sepit.data.errors import DataError


@pytest.fixture
def recorded(monkeypatch):
    calls, failing = [], set()

    def run(argv, cwd):
        calls.append(argv[3:])  # drop `python -m sepit.cli`
        return subprocess.CompletedProcess(argv, 1 if " ".join(argv[3:5]) in failing else 0)

    monkeypatch.setattr(demo_module.subprocess, "run", run)
    monkeypatch.setattr(demo_module, "_build_board", lambda output: output / "board")
    return calls, failing


def test_plan_trains_the_stages_in_order_and_evaluates_every_model():
    plan = demo_module.steps("sp14", 32, 32, None)
    fits = [s.argv[2].rsplit("/", 3)[-3:] for s in plan if s.argv[0] == "fit"]
    assert fits[:3] == [["sepit", "tiny", "stage0.yaml"], ["sepit", "tiny", "stage1.yaml"],
                        ["sepit", "tiny", "stage2.yaml"]]
    assert [f[-1] for f in fits[3:]] == ["text_llm.yaml", "text_llm_lora.yaml", "plm_projector.yaml", "qformer.yaml"]
    benches = {s.name.split()[1]: s.argv for s in plan if s.argv[0] == "bench"}
    assert list(benches) == ["sepit", "sepit-no-structure", "text_llm", "text_llm_lora", "plm_projector", "qformer",
                             "retrieval", "majority", "question_majority"]
    ablation = json.loads(benches["sepit-no-structure"][benches["sepit-no-structure"].index("--model_args") + 1])
    assert ablation == {"checkpoint": "runs/tiny/stage2/checkpoints/last.ckpt", "name": "sepit-no-structure",
                        "sequence_only": True}
    assert all("--limit" not in argv for argv in benches.values())  # complete tasks, so the board ranks


def test_rerun_skips_finished_steps_and_fresh_starts_over(recorded, tmp_path, capsys):
    calls, _ = recorded
    demo_module.demo(tmp_path / "out")
    total = len(calls)
    assert total == len(demo_module.steps("sp14", 32, 32, None))
    demo_module.demo(tmp_path / "out")
    assert len(calls) == total  # nothing ran again
    assert "done before, skipped" in capsys.readouterr().out
    demo_module.demo(tmp_path / "out", batch_size=8)  # other settings: the benches run again, the fits do not
    assert {c[0] for c in calls[total:]} == {"bench"}
    demo_module.demo(tmp_path / "out", fresh=True)
    benches = sum(step.argv[0] == "bench" for step in demo_module.steps("sp14", 32, 32, None))
    assert len(calls) == 2 * total + benches


def test_a_failed_step_stops_with_its_command_and_keeps_what_finished(recorded, tmp_path):
    calls, failing = recorded
    failing.add("fit --config")
    with pytest.raises(DataError, match=r"step 'fit sepit-stage0'.*`sepit fit --config .*stage0.yaml.*failed \(exit 1\)"):
        demo_module.demo(tmp_path / "out")
    assert (tmp_path / "out" / "card.done").is_file() and (tmp_path / "out" / "pretrain.done").is_file()
    assert calls[1] == ["pretrain"]  # the pretrained parts are built before any fit
    failing.clear()
    demo_module.demo(tmp_path / "out")
    assert calls[3][0] == "fit" and calls[2] == calls[3]  # the card and parts were not redone; the failed fit was
