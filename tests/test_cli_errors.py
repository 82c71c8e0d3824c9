"""A user's mistake at any entry point ends as one `error:` line naming the file, flag or value, with no traceback.

One case per entry point (train, sr, priors, prepare, sweeps, tables, figures, bench), the damaged-checkpoint and
`--source-option` paths of `llvfsr.sr`, and the memory check that refuses a batch that cannot fit (issue 12).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import tiny_synthetic_data
from torch import nn

from llvfsr.config import ExperimentConfig, ModelConfig, TrainConfig
from llvfsr.errors import UserError, cli_entry
from llvfsr.memory import GIB, StepMemory, probe_step_memory

ROOT = Path(__file__).resolve().parents[1]


def error_line(capsys, *names: str) -> str:
    """The captured stderr's `error:` line; asserts there is exactly one, it names `names`, and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def closed_port_url() -> str:
    """An http URL on this machine where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_cli_entry_turns_user_errors_into_one_line_and_keeps_bugs_loud(capsys):
    @cli_entry()
    def main(kind):
        if kind == "user":
            raise UserError("--flag 3: expected\nat most 2")
        if kind == "file":
            open("/nonexistent-dir/x.txt")
        raise KeyError("a bug")

    assert main("user") == 1
    assert error_line(capsys, "--flag 3: expected at most 2")  # joined onto one line
    assert main("file") == 1
    assert error_line(capsys, "/nonexistent-dir/x.txt", "no such file")
    with pytest.raises(KeyError):
        main("bug")


# --- train: a missing dataset; a batch that cannot fit --------------------------------------------------------


def test_train_missing_dataset(capsys):
    from llvfsr.train import main

    assert main(["--model", "srcnn", "--dataset", "/nonexistent/faces", "--device", "cpu"]) == 1
    error_line(capsys, "/nonexistent/faces", "expected")


def test_train_refuses_a_batch_that_does_not_fit_and_names_one_that_does(tmp_path, monkeypatch, capsys):
    import llvfsr.train as train_module

    # 1 GiB fixed + 1 GiB per face against 3.5 GiB free: batch 4 (5 GiB) is refused, batch 2 fits 90% of 3.5 GiB.
    monkeypatch.setattr(train_module, "free_memory", lambda device: int(3.5 * GIB))
    monkeypatch.setattr(train_module, "probe_step_memory", lambda *a, **k: StepMemory(GIB, GIB))
    argv = ["--model", "srcnn", "--hr-size", "32", "--train-n", "12", "--val-n", "2", "--test-n", "2",
            "--batch-size", "4", "--epochs", "1", "--no-lpips", "--no-niqe", "--device", "cpu",
            "--priors-root", str(tmp_path / "priors"), "--out", str(tmp_path / "run")]  # fmt: skip
    assert train_module.main(argv) == 1
    error_line(capsys, "srcnn", "batch 4 needs about 5.0 GiB", "3.5 GiB free", "--batch-size 2 fits")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # refused before the first step


def test_train_batch_larger_than_the_split(tmp_path, capsys):
    from llvfsr.train import main

    argv = ["--model", "srcnn", "--hr-size", "32", "--train-n", "12", "--val-n", "2", "--test-n", "2",
            "--batch-size", "64", "--epochs", "1", "--no-lpips", "--no-niqe", "--device", "cpu",
            "--priors-root", str(tmp_path / "priors"), "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    error_line(capsys, "--batch-size 64", "only 10 faces")


class _ActivationHeavy(nn.Module):
    """Keeps a 32 MiB float32 activation per face for backward, and has batch-norm statistics to disturb."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, lr, priors=None):
        x = self.norm(lr.flatten(2)).flatten(1)  # [B, 3 * h * w]
        wide = x.repeat(1, (8 << 20) // x.shape[1])  # [B, 8 Mi] floats = 32 MiB per face
        return (wide * self.weight).square().mean()


def test_probe_measures_a_face_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = _ActivationHeavy().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr = torch.rand(1, 3, 16, 16)
    rng = torch.get_rng_state()

    def step(optimizer, lr, hr, priors):
        optimizer.zero_grad()
        model(lr).backward()
        optimizer.step()

    memory = probe_step_memory(model, step, lr, lr, None)
    if memory is None:
        pytest.skip("no /proc/self/status: CPU peak memory cannot be read here")
    # `wide`, its product, the square and their gradients, 32 MiB each: measured 204-288 MiB at 1-4 threads (x86).
    assert 60 * 2**20 < memory.per_face < 700 * 2**20, memory
    assert memory.fixed == 3 * sum(p.numel() * 4 for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)  # running stats restored, weight not stepped
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


# --- sr: a damaged checkpoint; --source-option ----------------------------------------------------------------


def test_sr_names_a_truncated_checkpoint(tmp_path, capsys):
    from llvfsr.sr import main

    torch.save({"config": {}, "model": {"w": torch.zeros(1000)}}, tmp_path / "checkpoint.pt")
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # an interrupted copy
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "lr.png")
    argv = ["--checkpoint", str(tmp_path / "checkpoint.pt"), "--input", str(tmp_path / "lr.png"),
            "--output", str(tmp_path / "sr.png")]  # fmt: skip
    assert main(argv) == 1
    line = error_line(capsys, str(tmp_path / "checkpoint.pt"), "damaged or truncated")
    assert line.startswith("error: checkpoint")
    # The same through the module's own entry (python -m): one line on stderr, exit status 1.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "llvfsr.sr", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: checkpoint {tmp_path / 'checkpoint.pt'}")


@pytest.fixture(scope="module")
def mask_checkpoint(tmp_path_factory):
    """A tiny LLV-FSR with only the mask branch, trained one epoch on synthetic faces (HR 32, x8)."""
    from llvfsr.priors.ensure import ensure_priors
    from llvfsr.train import train

    root = tmp_path_factory.mktemp("sr")
    data = tiny_synthetic_data(root / "priors", train_n=12, val_n=2, test_n=2)
    model = ModelConfig("llvfsr", (("body_down", 2), ("branches", ("mask",)), ("heads", 2), ("num_blocks", 1),
                                   ("width", 8)))  # fmt: skip
    tcfg = TrainConfig(epochs=1, batch_size=4, lpips=False, niqe=False, n_samples=0, device="cpu")
    ensure_priors(data, {"mask"}, progress=False)
    config = ExperimentConfig(data=data, model=model, train=tcfg, out_dir=str(root / "run"))
    train(config)
    return config, root / "run" / "checkpoint.pt"


def test_sr_passes_source_options_to_a_real_source(mask_checkpoint, tmp_path, capsys):
    """`--source mask=face-parser --source-option mask.model_id=FOLDER`: a local face parser, no downloads."""
    pytest.importorskip("transformers")
    from test_sources_vision import tiny_segformer

    from llvfsr.checkpoint import load_checkpoint
    from llvfsr.priors.sources import ItemContext, make_source
    from llvfsr.priors.types import MASK_CLASSES, Priors
    from llvfsr.sr import main
    from llvfsr.train import build_model

    config, checkpoint = mask_checkpoint
    parser_dir = tmp_path / "face-parser"
    model, processor = tiny_segformer(dict(enumerate(MASK_CLASSES)))
    model.save_pretrained(parser_dir)
    processor.save_pretrained(parser_dir)
    lr = np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8)
    Image.fromarray(lr).save(tmp_path / "lr.png")
    argv = ["--checkpoint", str(checkpoint), "--input", str(tmp_path / "lr.png"), "--output", str(tmp_path / "sr.png"),
            "--source", "mask=face-parser", "--source-option", f"mask.model_id={parser_dir}"]  # fmt: skip
    assert main(argv) == 0
    mask = make_source("mask", "face-parser", model_id=str(parser_dir))(lr[None], 32, [ItemContext(0, "0", None)])[0]
    net = build_model(config)
    load_checkpoint(checkpoint, None, net)
    with torch.no_grad():
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
        expected = net.eval()(x, Priors(mask=torch.from_numpy(mask.astype(np.int64))[None])).clamp(0, 1)
    expected = (expected[0].permute(1, 2, 0).numpy() * 255).round()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sr.png")), expected.astype(np.uint8))
    capsys.readouterr()
    assert main([*argv, "--source-option", "mask.no_such_option=1"]) == 2
    error_line(capsys, "face-parser", "mask.no_such_option=1")


# --- priors, prepare -----------------------------------------------------------------------------------------


def test_priors_extract_missing_sam_checkpoint_and_missing_blip2_weights(tmp_path, capsys):
    pytest.importorskip("segment_anything")
    from llvfsr.priors.__main__ import main

    base = ["extract", "--dataset", "synthetic", "--n", "2", "--scale", "8", "--out", str(tmp_path), "--device", "cpu",
            "--text-encoder", "none"]  # fmt: skip
    assert main([*base, "--mask", "sam", "--source-option", "mask.checkpoint=/nonexistent/sam_vit_h.pth"]) == 1
    error_line(capsys, "mask source 'sam'", "/nonexistent/sam_vit_h.pth", "no such file")
    pytest.importorskip("transformers")
    assert main([*base, "--caption", "blip2", "--source-option", "caption.model_id=/nonexistent/blip2"]) == 1
    error_line(capsys, "caption source 'blip2'", "/nonexistent/blip2")


def test_prepare_missing_split_list(tmp_path, capsys):
    from llvfsr.data.prepare import main

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((512, 512, 3), np.uint8)).save(tmp_path / "images" / "0.png")
    argv = ["--images", str(tmp_path / "images"), "--out", str(tmp_path / "out"),
            "--train-list", str(tmp_path / "train.txt"), "--test-list", str(tmp_path / "test.txt")]  # fmt: skip
    assert main(argv) == 1
    error_line(capsys, str(tmp_path / "train.txt"), "no such file")


# --- sweeps, tables, figures, bench --------------------------------------------------------------------------


def test_sweep_unreachable_tracking_server_fails_before_ray_starts(tmp_path, monkeypatch, capsys):
    from sweeps.run import main

    monkeypatch.chdir(tmp_path)
    url = closed_port_url()
    assert main(["--grid", "smoke", "--tracking-uri", url]) == 1
    error_line(capsys, f"--tracking-uri {url}", "no MLflow server")
    assert not (tmp_path / "ray_results").exists()


def test_tables_missing_database_is_named_not_created(tmp_path, capsys):
    from analysis.tables import main

    missing = tmp_path / "nowhere" / "mlflow.db"
    assert main(["--tracking-uri", f"sqlite:///{missing}"]) == 1
    error_line(capsys, str(missing), "no MLflow database")
    assert not missing.exists() and not missing.parent.exists()


def test_figures_unreachable_tracking_server(capsys):
    from analysis.figures import main

    url = closed_port_url()
    assert main(["identity", "--tracking-uri", url]) == 1
    error_line(capsys, f"--tracking-uri {url}")


def test_bench_damaged_csv(tmp_path, capsys):
    from bench.__main__ import main

    (tmp_path / "bench.csv").write_text("model,scale,params\nllvfsr,eight,1\n")
    assert main(["--project", "smoke", "--from-csv", str(tmp_path / "bench.csv")]) == 1
    error_line(capsys, f"--from-csv {tmp_path / 'bench.csv'}")


def test_a_server_that_answers_counts_as_reachable_even_when_it_refuses():
    """An MLflow server behind basic auth answers /health with 401: reachable; a closed port is not."""
    import http.server
    import threading

    from llvfsr.cli import check_tracking_uri

    class Locked(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Locked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_tracking_uri(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(UserError, match="no MLflow server"):
        check_tracking_uri(closed_port_url())


def test_free_memory_on_the_cpu_is_at_most_the_machine():
    from llvfsr.memory import free_memory

    free = free_memory(torch.device("cpu"))
    if not Path("/proc/meminfo").exists():
        assert free is None
        return
    total = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                 if line.startswith("MemTotal:"))  # fmt: skip
    assert 2**20 < free <= total
