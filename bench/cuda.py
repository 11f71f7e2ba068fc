"""The CUDA path of the speech workers (`--device cuda`, float16), on a machine with a GPU.

1. The model on the GPU (float16) and on the CPU (int8, every core) decodes the same real
   speech: beckett.wav, jfk.flac, and two 21 s windows of both (in either order), one
   window alone (`transcribe`, what `cht worker` calls) and all at once (`transcribe_batch`,
   the in-process engine's catch-up). Reported: the words against what was said (WER), how
   far the GPU's words are from the CPU's, the language each detects, × real time.
2. `cht worker --device cuda` over a real nats-server on loopback, fed by a `QueueEngine`
   (what `cht record --queue` uses): throughput with 1 and 2 GPU workers against 1 CPU
   worker using every core, on a backlog of real speech chunks.

    python bench/cuda.py [--model DIR] [--media DIR]   # DIR holding beckett.wav and jfk.flac
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ctranslate2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scale import RATE, nats_server, throughput  # noqa: E402
from speech import HUMAN, beckett_path, jfk_path, model_dir, word_error_rate  # noqa: E402

from cht.transcribe.model import SpeechModel  # noqa: E402


def load(path: Path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path))


def text(decoded) -> str:
    return "".join(w.word for w in decoded.words)


def timed(fn, repeats: int = 3):
    """The result of `fn` and its median wall time over `repeats` runs after one warm-up."""
    result = fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return result, statistics.median(times)


def decode_table(models: dict[str, SpeechModel], beck: np.ndarray, jfk: np.ndarray) -> None:
    windows = [np.concatenate([jfk, beck]), np.concatenate([beck, jfk])]
    said = {"beckett": HUMAN["beckett"], "jfk": HUMAN["jfk"],
            "2 × 21 s": " ".join([HUMAN["jfk"], HUMAN["beckett"], HUMAN["beckett"], HUMAN["jfk"]])}
    got: dict[tuple[str, str], str] = {}
    print("| device | audio | call | language | WER vs said | × real time |")
    print("|---|---|---|---|---|---|")
    for device, model in models.items():
        runs = {
            "beckett": lambda m=model: m.transcribe(beck),
            "jfk": lambda m=model: m.transcribe(jfk),
            "2 × 21 s": lambda m=model: m.transcribe_batch(windows, language="en", beam_size=5),
        }
        for name, run in runs.items():
            result, seconds = timed(run)
            results = result if isinstance(result, list) else [result]
            words = " ".join(text(r) for r in results)
            got[device, name] = words
            audio_s = sum(len(w) for w in windows) / RATE if isinstance(result, list) else \
                len(beck if name == "beckett" else jfk) / RATE
            call = "transcribe_batch" if isinstance(result, list) else "transcribe"
            print(f"| {device} | {name} | {call} | {results[0].language} | "
                  f"{word_error_rate(said[name], words):.1%} | {audio_s / seconds:.0f}× |", flush=True)
    for name in said:
        print(f"{name}: cuda vs cpu words differ by {word_error_rate(got['cpu', name], got['cuda', name]):.1%}"
              f"\n  cuda: {got['cuda', name]}\n  cpu:  {got['cpu', name]}")
    lang, p = models["cuda"].detect_language(jfk)
    print(f"language detected on cuda for jfk: {lang} (p={p:.2f})")


def worker_table(model: Path, beck: np.ndarray, jfk: np.ndarray, copies: int) -> None:
    chunks = [jfk[: 5 * RATE], jfk[5 * RATE:], beck[: int(4.6 * RATE)], beck[int(4.6 * RATE):], beck] * copies
    audio = sum(len(c) for c in chunks) / RATE
    cores = os.cpu_count() or 1
    print(f"\n{len(chunks)} chunks, {audio:.0f} s of speech; {cores} cores")
    print("| workers | audio s per wall s | wall s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, nats_server(Path(tmp)) as url:
        for label, n, extra in (
            (f"1 × `--device cpu --threads {cores}`", 1, ("--device", "cpu", "--threads", str(cores))),
            ("1 × `--device cuda`", 1, ("--device", "cuda")),
            ("2 × `--device cuda` (one GPU)", 2, ("--device", "cuda")),
        ):
            rate, wall = throughput(url, n, chunks, Path(tmp), ("--model", str(model), *extra))
            print(f"| {label} | {rate:.1f} | {wall:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--media", type=Path, default=None, help="a dir holding beckett.wav and jfk.flac")
    parser.add_argument("--copies", type=int, default=20)
    args = parser.parse_args()
    model = args.model or model_dir()
    beck = load(args.media / "beckett.wav" if args.media else beckett_path())
    jfk = load(args.media / "jfk.flac" if args.media else jfk_path())
    print(f"CTranslate2 {ctranslate2.__version__}: {ctranslate2.get_cuda_device_count()} CUDA device(s), "
          f"compute types {sorted(ctranslate2.get_supported_compute_types('cuda'))}")
    began = time.perf_counter()
    models = {"cuda": SpeechModel(model, device="cuda")}
    print(f"loaded on cuda (float16) in {time.perf_counter() - began:.1f} s")
    models["cpu"] = SpeechModel(model, device="cpu")
    decode_table(models, beck, jfk)
    del models
    worker_table(model, beck, jfk, args.copies)


if __name__ == "__main__":
    main()
