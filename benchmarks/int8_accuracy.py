"""INT8 that keeps accuracy: post-training quantization recipes of a trained model vs its fp32 export, through the
runtime (onnxruntime and OpenVINO): ShapesWorld zero-shot top-1 (seen / held-out) delta and top-1 agreement with
fp32 on real photos; every recipe is also gated like an INT8 artifact (export/tolerances.py). Usage:
    python benchmarks/int8_accuracy.py --model /tmp/ov_student/student [--artifact runs/int8/artifact]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def recipes():
    from edgeclip.export.variants import Int8Recipe as R
    return {  # name -> (calibration data, recipe)
        "baseline: per-channel MinMax, photo calib": ("photos", R()),
        "in-domain calib (ShapesWorld)": ("shapes", R()),
        "entropy calib": ("shapes", R(calibration="entropy")),
        "percentile 99.999 calib": ("shapes", R(calibration="percentile")),
        "per-tensor weights": ("shapes", R(per_channel=False)),
        "asymmetric uint8 activations": ("shapes", R(symmetric_activations=False)),
        "no quant_pre_process": ("shapes", R(pre_process=False)),
        "embedding+projection fp32": ("shapes", R(keep_fp32=("ends",))),
        "attention matmuls fp32": ("shapes", R(keep_fp32=("attention",))),
        "ends+attention fp32": ("shapes", R(keep_fp32=("ends", "attention"))),
        "NNCF PTQ (transformer preset)": ("shapes", "nncf"),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/tmp/ov_student/student", help="trained student folder or 'reference'")
    p.add_argument("--artifact", default=None, help="keep the artifact with every recipe as a variant here")
    p.add_argument("--zeroshot", type=int, default=2048, help="ShapesWorld zero-shot images")
    p.add_argument("--calib", type=int, default=64, help="calibration images")
    p.add_argument("--only", default=None, help="comma-separated recipe indices to run (default: all)")
    p.add_argument("--photos", default=PHOTOS, help="folder of labelled photos (manifest.csv)")
    p.add_argument("--name", default="int8_accuracy", help="results file stem")
    return p.parse_args(argv)


PHOTOS = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-200",
                            Path("/work/shared/data/imagenet-sample-200")) if p.is_dir()), None)


def eval_sets(rt, n_zs: int, photos_dir):
    from PIL import Image

    from edgeclip.data.shapes import ShapesWorld, class_prompts, is_held_out
    from edgeclip.export.parity import load_photos
    zi, _, zl = ShapesWorld("zeroshot", rt.preprocess.size).batch(0, n_zs)
    photos, labels = load_photos(photos_dir, 200)
    return {"zs_pixels": rt.preprocess.batch([Image.fromarray(i) for i in zi]), "zs_labels": zl,
            "held": np.array([is_held_out(int(l)) for l in zl]), "zs_ids": rt.tokenizer(class_prompts()),
            "photo_pixels": rt.preprocess.batch(photos),
            "photo_ids": rt.tokenizer([f"a photo of a {c}" for c in sorted(set(labels))]),
            "photo_labels": np.array([sorted(set(labels)).index(l) for l in labels])}


def evaluate(rt, s) -> dict:
    from edgeclip.evaluate import zero_shot_metrics
    zi, zc = rt.embed_pixels(s["zs_pixels"], 64), rt.embed_ids(s["zs_ids"])
    z = zero_shot_metrics(zi, zc, s["zs_labels"], {"seen": ~s["held"], "held_out": s["held"]})
    pi, pc = rt.embed_pixels(s["photo_pixels"], 32), rt.embed_ids(s["photo_ids"])
    pred = (pi @ pc.T).argmax(1)
    return {"zs_top1": z["top1"], "zs_seen_top1": z["seen_top1"], "zs_held_out_top1": z["held_out_top1"],
            "photo_pred": pred, "photo_emb": pi, "photo_top1": float((pred == s["photo_labels"]).mean() * 100)}


def _vs_fp32(got: dict, ref: dict) -> dict:
    cos = (got["photo_emb"] * ref["photo_emb"]).sum(1)
    return {"zs_top1": got["zs_top1"], "zs_seen_top1": got["zs_seen_top1"], "zs_held_out_top1": got["zs_held_out_top1"],
            "zs_seen_delta": got["zs_seen_top1"] - ref["zs_seen_top1"],
            "zs_held_out_delta": got["zs_held_out_top1"] - ref["zs_held_out_top1"],
            "zs_delta": got["zs_top1"] - ref["zs_top1"],
            "photo_top1_agreement": float((got["photo_pred"] == ref["photo_pred"]).mean() * 100),
            "photo_min_cos": float(cos.min()), "photo_mean_cos": float(cos.mean())}


def main(argv=None):
    a = parse_args(argv)
    import torch
    torch.set_num_threads(2)
    import edgeclip.runtime as rt
    from edgeclip.data.shapes import ShapesWorld
    from edgeclip.artifact import Variant, Verdict
    from edgeclip.artifact.manifest import hash_folder, read_manifest, write_manifest
    from edgeclip.export import export_onnx
    from edgeclip.export.parity import PROMPTS, compare, load_photos
    from edgeclip.export.tolerances import check_gates
    from edgeclip.export.variants import int8_dynamic, add_int8_variant
    from edgeclip.models import load_teacher
    from PIL import Image
    model = load_teacher(a.model).float().eval()
    td = tempfile.TemporaryDirectory()
    art = Path(a.artifact) if a.artifact else Path(td.name) / "artifact"
    export_onnx(model, art)
    int8_dynamic(art / "image_encoder.onnx", art / "image_encoder.int8-dynamic.onnx")
    int8_dynamic(art / "text_encoder.onnx", art / "text_encoder.int8-dynamic.onnx")
    man = read_manifest(art)  # this benchmark builds its own variants: it keeps their records and writes them below
    man.variants["int8-dynamic"] = Variant("onnx", "int8", "dynamic", "image_encoder.int8-dynamic.onnx",
                                           "text_encoder.int8-dynamic.onnx")
    man.files = hash_folder(art)
    write_manifest(art, man)
    base = rt.load(art)
    photos, plabels = load_photos(a.photos, 200)
    calib = {"photos": base.preprocess.batch(photos[:a.calib]),
             "shapes": base.preprocess.batch([Image.fromarray(i) for i in
                                              ShapesWorld("train", base.preprocess.size).batch(0, a.calib)[0]])}
    calib_ids = base.tokenizer(PROMPTS + ShapesWorld("train").batch(0, 44)[1])
    s = eval_sets(base, a.zeroshot, a.photos)
    ref = {b: evaluate(rt.load(art, backend=b), s) for b in ("onnxruntime", "openvino")}
    rows, parity = [], {}
    items = list(recipes().items())
    pick = [int(i) for i in a.only.split(",")] if a.only else range(len(items))
    variants = [("int8-dynamic (reference point)", "int8-dynamic", None)]
    for i in pick:
        name, (src, recipe) = items[i]
        v = f"int8-r{i}"
        t = time.time()
        man.variants[v] = add_int8_variant(art, v, calib[src], calib_ids, recipe)
        variants.append((name, v, round(time.time() - t, 1)))
    man.files = hash_folder(art)
    write_manifest(art, man)
    for name, v, build_s in variants:
        metrics = compare(model, rt.load(art, v), photos[:64], PROMPTS, plabels[:64])
        failed = check_gates("int8-static", metrics)
        parity[v] = Verdict(not failed, failed)
        for b in ("onnxruntime", "openvino"):
            got = _vs_fp32(evaluate(rt.load(art, v, backend=b), s), ref[b])
            rows.append({"recipe": name, "variant": v, "backend": b, "build_s": build_s, "gates_passed": not failed,
                         "gates_failed": failed, **got})
            print(f"{name:45s} {b:12s} zs Δ seen {got['zs_seen_delta']:+.2f} held {got['zs_held_out_delta']:+.2f} "
                  f"photo agr {got['photo_top1_agreement']:.1f}% min cos {got['photo_min_cos']:.4f}", flush=True)
    fp32_failed = check_gates("fp32", compare(model, base, photos[:64], PROMPTS, plabels[:64]))
    man.parity = {"fp32": Verdict(not fp32_failed, fp32_failed), **parity}
    write_manifest(art, man)
    fp32 = {b: {k: ref[b][k] for k in ("zs_top1", "zs_seen_top1", "zs_held_out_top1", "photo_top1")} for b in ref}
    write(a.name, {"model": a.model, "zeroshot_images": a.zeroshot, "photos": len(photos), "calib_images": a.calib,
                   "shared_machine": True, "fp32": fp32, "rows": rows})


if __name__ == "__main__":
    main()
