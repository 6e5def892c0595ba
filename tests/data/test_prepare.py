"""`edgeclip prepare`: shards re-encoded at the student's resolution; `compress --decode gpu` refused without CUDA."""
import io
import json
import tarfile

import pytest
from PIL import Image

from edgeclip.data.prepare import prepare_shards
from edgeclip.data.wds import WdsPairs
from edgeclip.errors import ConfigError, DataError
from tests.conftest import one_error_line, run_cli

SIZES = [(96, 64), (50, 120), (30, 20), (200, 200)]  # the (30, 20) one is already small: kept as it is


def _jpeg(i: int, size) -> bytes:
    import numpy as np
    w, h = size  # smooth texture: resampling differences show, JPEG keeps it
    y, x = np.mgrid[0:h, 0:w]
    px = np.stack([128 + 100 * np.sin(x / (3 + i % 5)), 128 + 100 * np.cos(y / 4), (x * y + 40 * i) % 256], -1)
    b = io.BytesIO()
    Image.fromarray(px.astype(np.uint8)).save(b, "JPEG")
    return b.getvalue()


def _shard(path, n=12, bad=(), empty=()):
    """n pairs; ``bad`` keys get bytes that are no image, ``empty`` keys an empty caption."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for k in range(n):
            img = b"not a jpeg" if k in bad else _jpeg(k, SIZES[k % len(SIZES)])
            cap = b"" if k in empty else f"caption {k}".encode()
            for name, data in ((f"k{k:04d}.jpg", img), (f"k{k:04d}.txt", cap)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _read(spec):
    pairs = WdsPairs(str(spec), shuffle_buffer=0)
    out = {}
    for raw in pairs.raw(0, 0, 0, 1, shuffle=False):
        item = pairs.decode(raw)
        if item is not None:
            out[item[0]] = (item[1].size, item[2])
    return out, pairs.skipped.counts


def test_prepare_roundtrip_keys_captions_sizes_and_skips(tmp_path):
    src = _shard(tmp_path / "src" / "a.tar", n=12, bad={3}, empty={5})
    out = tmp_path / "prep"
    m = prepare_shards(str(src), out, size=32, workers=0, shard_samples=4, progress=False)
    before, _ = _read(src)
    after, skipped = _read(out)
    assert set(after) == set(before) and len(after) == 10
    assert all(after[k][1] == before[k][1] for k in after)  # same captions under the same keys
    for k, ((w, h), _) in after.items():
        ow, oh = before[k][0]
        if min(ow, oh) <= 32:
            assert (w, h) == (ow, oh)
        else:
            assert min(w, h) == 32 and abs(w / h - ow / oh) < 0.05
    small = sum(min(before[k][0]) <= 32 for k in before)
    assert m["written"] == 10 and m["kept_as_is"] == small == 3 and m["size"] == 32
    assert m["skipped"] == {"corrupt image": 1, "empty caption": 1} and not skipped
    assert len(m["shards"]) == 3 and json.loads((out / "manifest.json").read_text())["edgeclip_output"] == \
        "prepared-shards"


def test_prepare_workers_match_in_process(tmp_path):
    src = _shard(tmp_path / "src" / "a.tar", n=8)
    prepare_shards(str(src), tmp_path / "w0", size=24, workers=0, progress=False)
    prepare_shards(str(src), tmp_path / "w1", size=24, workers=1, progress=False)
    a, b = _read(tmp_path / "w0")[0], _read(tmp_path / "w1")[0]
    assert a == b and len(a) == 8


@pytest.mark.slow
def test_prepare_bad_input_one_line_nothing_written(tmp_path):
    src = _shard(tmp_path / "src" / "a.tar", n=4)
    out = tmp_path / "prep"
    for args in (["--data", str(tmp_path / "none-{0..3}.tar")], ["--data", str(src), "--size", "8"],
                 ["--data", str(src), "--quality", "0"]):
        code, err = run_cli("prepare", *args, "--out", out)
        assert one_error_line(code, err), (args, err)
        assert not out.exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, err = run_cli("prepare", "--data", src, "--out", tmp_path / "mine")
    assert one_error_line(code, err) and (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(ConfigError):  # output inside the folder of source shards
        prepare_shards(str(src.parent), tmp_path / "src" / "out", workers=0, progress=False)
    with pytest.raises(DataError):  # every sample unreadable: nothing written
        prepare_shards(str(_shard(tmp_path / "bad" / "b.tar", n=2, bad={0, 1})), out, workers=0, progress=False)
    assert not out.exists()


@pytest.mark.slow
def test_prepare_existing_output_needs_overwrite(tmp_path):
    src = _shard(tmp_path / "src" / "a.tar", n=4)
    out = tmp_path / "prep"
    code, err = run_cli("prepare", "--data", src, "--out", out, "--size", "32", "--workers", "0")
    assert code == 0 and json.loads((out / "manifest.json").read_text())["size"] == 32
    code, err = run_cli("prepare", "--data", src, "--out", out, "--size", "16", "--workers", "0")
    assert one_error_line(code, err) and "--overwrite" in err[0]
    assert json.loads((out / "manifest.json").read_text())["size"] == 32
    m = prepare_shards(str(src), out, size=16, workers=0, overwrite=True, progress=False)
    assert m["size"] == 16 and json.loads((out / "manifest.json").read_text())["size"] == 16


def test_decode_gpu_refused_without_cuda(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: --decode gpu is allowed here")
    src = _shard(tmp_path / "src" / "a.tar", n=4)
    out = tmp_path / "run"
    code, err = run_cli("compress", "reference", "--target", "50%", "--data", src, "--steps", "1", "--decode", "gpu",
                        "--out", out)
    assert one_error_line(code, err) and "--decode gpu" in err[0]
    assert not out.exists()


def test_gpu_transform_matches_open_clip_eval_transform():
    """The GPU path reads size/mean/std from the student's own transform (the decode itself needs CUDA)."""
    from open_clip.transform import image_transform

    from edgeclip.data.gpu_decode import gpu_transform_of
    spec = gpu_transform_of(image_transform(64, is_train=False, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)))
    assert spec.size == 64 and spec.mean == pytest.approx((0.1, 0.2, 0.3)) and spec.std == pytest.approx(
        (0.4, 0.5, 0.6)) and spec.bicubic
    with pytest.raises(ConfigError):
        gpu_transform_of(lambda img: img)


def test_decode_gpu_wiring_on_cpu_device(tmp_path):
    """The --decode gpu loader path run with device "cpu" (nvjpeg itself needs a GPU): workers hand raw bytes,
    the main process decodes; pixels match the CPU transform, corrupt images are dropped with their rows."""
    import torch
    from open_clip.transform import image_transform

    from edgeclip.data.gpu_decode import gpu_transform_of
    from edgeclip.data.loader import BatchLoader, WdsBatches
    src = _shard(tmp_path / "src" / "a.tar", n=8, bad={1})
    tf = image_transform(32, is_train=False)

    def tok(caps):
        return torch.tensor([[int(c.split()[1])] for c in caps])

    def batches(raw):
        pairs = WdsPairs(str(src), shuffle_buffer=0)
        ws = WdsBatches(pairs, 4, 0, tf, tok, tok, shuffle=False, drop_last=False, raw_images=raw)
        gpu = (gpu_transform_of(tf), "cpu") if raw else None
        return list(BatchLoader(ws, 0, gpu_decode=gpu).one_epoch()), pairs.skipped.counts

    cpu, cpu_skips = batches(False)
    gpu, gpu_skips = batches(True)
    def rows(bs):  # key -> (pixels, teacher ids, student ids); a GPU batch loses its corrupt rows after batching
        return {k: (b[1][i], b[2][i], b[3][i]) for b in bs for i, k in enumerate(b[0])}

    g, c = rows(gpu), rows(cpu)
    assert list(g) == list(c) and len(g) == 7 and [len(b[0]) for b in gpu] == [3, 4]
    assert gpu_skips == cpu_skips == {"corrupt image": 1}
    for k in g:
        assert g[k][0].shape == c[k][0].shape == (3, 32, 32)
        assert torch.equal(g[k][1], c[k][1]) and torch.equal(g[k][2], c[k][2])
        assert (g[k][0] - c[k][0]).abs().mean() < 0.01  # torch vs PIL bicubic resampling: nearly equal


def test_decode_gpu_keeps_batch_size_across_ranks(tmp_path):
    """Under torchrun (world > 1) a dropped corrupt row is refilled, so the gathered loss sees equal rows."""
    import torch
    from open_clip.transform import image_transform

    from edgeclip.data.gpu_decode import gpu_transform_of
    from edgeclip.data.loader import BatchLoader, WdsBatches
    src = _shard(tmp_path / "src" / "a.tar", n=8, bad={0, 2})
    tf = image_transform(32, is_train=False)

    def tok(caps):
        return torch.tensor([[int(c.split()[1])] for c in caps])

    pairs = WdsPairs(str(src), shuffle_buffer=0)
    ws = WdsBatches(pairs, 8, 0, tf, tok, tok, rank=0, world=2, shuffle=False, raw_images=True)
    got = list(BatchLoader(ws, 0, gpu_decode=(gpu_transform_of(tf), "cpu")).one_epoch())
    assert got and all(len(b[0]) == b[1].shape[0] == b[2].shape[0] == 4 for b in got)
    assert pairs.skipped.counts["corrupt image"] == 2  # both on rank 0 (samples split by rank: 0, 2, 4, 6)
    assert any(len(set(b[0])) < len(b[0]) for b in got)  # so its batch was refilled
    for keys, pixels, t_ids, _ in got:  # a refilled row is a true copy: same key, same pixels, same caption
        for i, k in enumerate(keys):
            j = keys.index(k)
            assert torch.equal(pixels[i], pixels[j]) and torch.equal(t_ids[i], t_ids[j])
