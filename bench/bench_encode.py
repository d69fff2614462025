"""Encoding for retrieval and evaluation: passages/s and nDCG@10 of the student per backend, arms in one run.

`distill eval` and the pipeline's final evaluation encode a whole corpus twice (base and trained model). On a
CPU that computes bf16 natively (AVX512-BF16, AMX) autocast to bf16 is the default for that encoding. This bench
checks that default against torch fp32 and against sentence-transformers' other inference backends: ONNX Runtime
(fp32, and int8 by dynamic quantization) and OpenVINO (its default precision, and int8 by static quantization
calibrated on passages of the corpus, the only int8 export sentence-transformers offers for OpenVINO).

A backend would become the default for inference encoding only at >= 1.5x the passages/s of the current default
with nDCG@10 within 0.002 of torch fp32 (training stays in torch); the table says which arm meets that.

All arms are loaded in one process. The passages (the whole corpus, or with --corpus every passage judged for a
test query plus random others) are cut into chunks and the arms take turns chunk by chunk, so a neighbour's load
on a shared machine falls on every arm alike; each arm's embeddings of those passages then give its nDCG@10.
The ONNX and OpenVINO arms need optimum packages that pin other transformers versions than the project's: run
them from a separate virtual environment (docs/benchmarks.md says which). Exports from the local
model folder (no model hub) go to a cache folder once.

    .venv/bin/python bench/bench_encode.py --data ../shared/data/scifact
    /work/exp/venv-enc-onnx/bin/python bench/bench_encode.py --corpus 1500 \
        --backends torch-fp32,torch-bf16,onnx,onnx-int8,openvino,openvino-int8
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARMS = ("torch-fp32", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-int8")
BASELINE, DEFAULT = "torch-fp32", "torch-bf16"  # the rule's quality reference, and the default to beat
MIN_SPEEDUP, MAX_NDCG_DROP = 1.5, 0.002
CALIBRATION_PASSAGES = 300  # OpenVINO's default number of calibration samples
PACKAGES = ("torch", "transformers", "sentence-transformers", "onnxruntime", "onnx", "optimum", "optimum-onnx",
            "optimum-intel", "openvino", "nncf")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def onnx_quantization_target() -> str:
    """The instruction set the dynamic int8 ONNX export is tuned for: the best this CPU has."""
    import platform

    if platform.machine() in ("arm64", "aarch64"):
        return "arm64"
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


def export_onnx(folder: Path, exports: Path) -> Path:
    from sentence_transformers import SentenceTransformer

    target = exports / "onnx"
    if not (target / "onnx" / "model.onnx").is_file():
        SentenceTransformer(str(folder), device="cpu", backend="onnx").save_pretrained(str(target))
    return target


def export_openvino(folder: Path, exports: Path) -> Path:
    from sentence_transformers import SentenceTransformer

    target = exports / "openvino"
    if not (target / "openvino" / "openvino_model.xml").is_file():
        SentenceTransformer(str(folder), device="cpu", backend="openvino").save_pretrained(str(target))
    return target


def calibration_folder(passages: list[str], exports: Path) -> Path:
    """A local `datasets` folder of corpus passages: the calibration set must come from disk (no model hub)."""
    target = exports / "calibration"
    target.mkdir(parents=True, exist_ok=True)
    chosen = random.Random(1).sample(passages, min(CALIBRATION_PASSAGES, len(passages)))
    with open(target / "train.jsonl", "w", encoding="utf-8") as handle:
        for text in chosen:
            handle.write(json.dumps({"sentence": text}) + "\n")
    return target


def load_arm(arm: str, folder: Path, exports: Path, passages: list[str], threads: int) -> tuple[Any, str, str]:
    """The loaded model, the autocast precision to encode under, and how the arm was made."""
    from sentence_transformers import SentenceTransformer

    if arm.startswith("torch-"):
        return SentenceTransformer(str(folder), device="cpu"), arm.removeprefix("torch-"), "torch"
    if arm.startswith("onnx"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        target = export_onnx(folder, exports)
        file_name, how = "model.onnx", "ONNX Runtime fp32"
        if arm == "onnx-int8":
            from sentence_transformers import export_dynamic_quantized_onnx_model

            instructions = onnx_quantization_target()
            file_name = f"model_qint8_{instructions}.onnx"
            if not (target / "onnx" / file_name).is_file():
                fp32 = SentenceTransformer(str(target), device="cpu", backend="onnx", model_kwargs={"file_name": "model.onnx"})
                export_dynamic_quantized_onnx_model(fp32, instructions, str(target))
            how = f"ONNX Runtime, int8 dynamic quantization ({instructions})"
        kwargs = {"file_name": file_name, "provider": "CPUExecutionProvider", "session_options": options}
        return SentenceTransformer(str(target), device="cpu", backend="onnx", model_kwargs=kwargs), "fp32", how
    target = export_openvino(folder, exports)
    file_name, how = "openvino_model.xml", "OpenVINO, its default precision"
    if arm == "openvino-int8":
        from sentence_transformers import export_static_quantized_openvino_model

        file_name = "openvino_model_qint8_quantized.xml"
        if not (target / "openvino" / file_name).is_file():
            fp32 = SentenceTransformer(str(target), device="cpu", backend="openvino", model_kwargs={"file_name": "openvino_model.xml"})
            export_static_quantized_openvino_model(
                fp32, None, str(target), dataset_name=str(calibration_folder(passages, exports)),
                dataset_config_name="default", dataset_split="train", column_name="sentence")
        how = f"OpenVINO, int8 static quantization calibrated on {CALIBRATION_PASSAGES} corpus passages"
    kwargs = {"file_name": file_name, "ov_config": {"INFERENCE_NUM_THREADS": threads}}
    model = SentenceTransformer(str(target), device="cpu", backend="openvino", model_kwargs=kwargs)
    compiled = model.transformers_model.request  # the compiled model
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    how += f" (inference precision {getattr(precision, 'to_string', lambda: str(precision))()})"
    return model, "fp32", how


def encode(model: Any, precision: str, texts: list[str], batch_size: int, query: bool = False) -> tuple[Any, float]:
    """Embeddings as a float tensor, and the seconds they took."""
    from synthgen.machine import autocast

    method = model.encode_query if query else model.encode_document
    with autocast("cpu", precision):
        started = time.perf_counter()
        embeddings = method(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
        return embeddings.float().cpu(), time.perf_counter() - started


def corpus_subset(beir: Any, size: int, seed: int = 0) -> list[int]:
    """Positions of every passage judged for a test query, filled up to `size` with random others (all: size 0)."""
    if size <= 0 or size >= len(beir.passages):
        return list(range(len(beir.passages)))
    judged = {p for grades in beir.qrels.values() for p in grades}
    keep = [i for i, p in enumerate(beir.passage_ids) if p in judged]
    others = [i for i, p in enumerate(beir.passage_ids) if p not in judged]
    keep += random.Random(seed).sample(others, max(0, size - len(keep)))
    return sorted(keep)


def rule(arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm: speed over the default, nDCG@10 minus fp32's, and whether it meets the issue's rule."""
    if BASELINE not in arms or DEFAULT not in arms:
        return {}
    verdicts = {}
    for arm, row in arms.items():
        speedup = row["passages_per_s"] / arms[DEFAULT]["passages_per_s"]
        drop = row["ndcg@10"] - arms[BASELINE]["ndcg@10"]
        verdicts[arm] = {"speedup_vs_default": round(speedup, 3), "ndcg@10_vs_fp32": round(drop, 4),
                         "meets_rule": arm != DEFAULT and speedup >= MIN_SPEEDUP and abs(drop) <= MAX_NDCG_DROP}
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--backends", default="torch-fp32,torch-bf16",
                        help=f"comma-separated arms, from: {', '.join(ARMS)}")
    parser.add_argument("--corpus", type=int, default=0, help="passages searched: every judged one, filled up with "
                        "random others to this many (0: the whole corpus)")
    parser.add_argument("--chunk", type=int, default=256, help="passages an arm encodes before the next arm's turn")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="threads for every backend (0: physical cores)")
    parser.add_argument("--exports", type=Path, default=None, help="folder for the ONNX and OpenVINO exports "
                        "(default: the synthgen cache)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default: bench/results/<data>-encode.json)")
    args = parser.parse_args()

    from distill.evaluate import load_beir
    from distill.recipe import resolve_base_model
    from synthgen.errors import UserError
    from synthgen.machine import cache_root, cpu_has_bf16_units, use_threads

    arms = [a.strip() for a in args.backends.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        fail(f"--backends {unknown[0] if unknown else args.backends!r} is not one of {', '.join(ARMS)}")
    if "torch-bf16" in arms and not cpu_has_bf16_units():
        print("this CPU has no native bf16: the torch-bf16 arm is left out", flush=True)
        arms.remove("torch-bf16")
    if args.chunk < 1:
        fail("--chunk must be at least 1")
    try:
        beir = load_beir(args.data)
        folder = Path(resolve_base_model(args.model))
    except UserError as error:
        fail(str(error))
    threads = use_threads(args.threads)
    exports = args.exports or cache_root() / "encode-backends" / folder.name
    models = {}
    for arm in arms:
        started = time.perf_counter()
        try:
            models[arm] = load_arm(arm, folder, exports, beir.passages, threads)
        except ImportError as error:
            fail(f"arm {arm} needs packages this environment lacks ({error}); see docs/benchmarks.md")
        print(f"{arm}: {models[arm][2]}, ready in {time.perf_counter() - started:.0f} s", flush=True)

    import torch

    from distill.evaluate import search
    from distill.metrics import mean_metrics

    # Each passage is encoded once per arm, in chunks, the arms taking turns chunk by chunk (order reversed every
    # other chunk): the timings are interleaved and the embeddings give nDCG@10 over the same passages.
    positions = corpus_subset(beir, args.corpus)
    random.Random(0).shuffle(positions)
    chunks = [positions[i : i + args.chunk] for i in range(0, len(positions), args.chunk)]
    warm = [beir.passages[i] for i in positions[: args.batch_size]]
    for arm, (model, precision, _) in models.items():  # first-call allocations are not timed
        encode(model, precision, warm, args.batch_size)
    parts: dict[str, list[Any]] = {arm: [] for arm in arms}
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    for number, chunk in enumerate(chunks):
        texts = [beir.passages[i] for i in chunk]
        for arm in arms if number % 2 == 0 else arms[::-1]:
            model, precision, _ = models[arm]
            embeddings, took = encode(model, precision, texts, args.batch_size)
            parts[arm].append(embeddings)
            seconds[arm].append(took)
        print(f"chunk {number + 1}/{len(chunks)}: " + ", ".join(
            f"{arm} {len(chunk) / seconds[arm][-1]:.1f}" for arm in arms) + " passages/s", flush=True)
    ids = [beir.passage_ids[i] for i in positions]
    results: dict[str, dict[str, Any]] = {}
    for arm, (model, precision, how) in models.items():
        queries, _ = encode(model, precision, beir.queries, args.batch_size, query=True)
        ranked = search(queries, torch.cat(parts[arm]))
        runs = {q: [ids[i] for i in row] for q, row in zip(beir.query_ids, ranked)}
        rates = [len(c) / t for c, t in zip(chunks, seconds[arm])]
        results[arm] = {"how": how, "passages_per_s": len(positions) / sum(seconds[arm]),
                        "chunk_rates": [round(r, 2) for r in rates],
                        "ndcg@10": mean_metrics(runs, beir.qrels)["ndcg@10"]}
    verdicts = rule(results)
    which = "all" if len(positions) == len(beir.passages) else "every judged one, then random"
    print(f"\n{args.data.name}, {args.model}: {len(positions)} of {len(beir.passages)} passages ({which}), "
          f"{len(beir.queries)} queries; arms take turns in one process, {len(chunks)} chunks, {threads} threads")
    print(f"{'arm':<14} {'passages/s':>10} {'vs ' + DEFAULT:>14} {'nDCG@10':>8} {'vs fp32':>8}  meets rule")
    for arm, row in results.items():
        verdict = verdicts.get(arm, {})
        print(f"{arm:<14} {row['passages_per_s']:>10.1f} {verdict.get('speedup_vs_default', float('nan')):>13.2f}x "
              f"{row['ndcg@10']:>8.4f} {verdict.get('ndcg@10_vs_fp32', float('nan')):>+8.4f}  "
              f"{'n/a' if not verdict else 'yes' if verdict['meets_rule'] else 'no'}")
    print(f"rule: >= {MIN_SPEEDUP}x the passages/s of {DEFAULT} and nDCG@10 within {MAX_NDCG_DROP} of {BASELINE}")
    out = args.out or REPO / "bench" / "results" / f"{args.data.name}-encode.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "data": args.data.name, "model": args.model, "passages": len(positions), "corpus": len(beir.passages),
        "queries": len(beir.queries), "chunk": args.chunk,
        "batch_size": args.batch_size, "threads": threads, "versions": versions(), "arms": results,
        "rule": {"min_speedup_vs": DEFAULT, "min_speedup": MIN_SPEEDUP, "max_ndcg_diff_vs": BASELINE,
                 "max_ndcg_diff": MAX_NDCG_DROP, "verdicts": verdicts},
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
