"""webdataset streams: brace lists, rank/worker split, shuffle, corrupt members counted, exact resume position."""
import io
import tarfile

import pytest
import torch
from PIL import Image

from edgeclip.data.loader import BatchLoader, WdsBatches, check_workers
from edgeclip.data.pairs import open_pairs
from edgeclip.data.wds import WdsPairs
from edgeclip.errors import ConfigError, DataError


def _jpeg(i: int) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", (20, 12), (i * 7 % 256, i * 13 % 256, 90)).save(b, "JPEG")
    return b.getvalue()


def write_shards(root, n_shards=3, per=10, bad=()):
    root.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(root / f"s-{s:03d}.tar", "w") as tf:
            for j in range(per):
                k = s * per + j
                img = b"not a jpeg" if k in bad else _jpeg(k)
                for name, data in ((f"{k:05d}.jpg", img), (f"{k:05d}.txt", f"pair {k}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return str(root / ("s-{000..%03d}.tar" % (n_shards - 1)))


def _tf(img):
    return torch.from_numpy(__import__("numpy").asarray(img.resize((8, 8)), dtype="float32")).permute(2, 0, 1)


def _tok(caps):
    return torch.tensor([[int(c.split()[1])] for c in caps])


def _keys(pairs, workers, n, bs=4, rank=0, world=1, state=None, seed=0):
    src = WdsBatches(pairs, bs * world, seed, _tf, _tok, _tok, rank=rank, world=world, workers=workers)
    loader = BatchLoader(src, workers)
    out = [b[0] for b in loader.iterate(0, n, state)]
    return out, loader


def test_brace_shards_stream_every_good_pair_once_per_epoch_and_count_corrupt(tmp_path):
    spec = write_shards(tmp_path / "d", bad={4, 17})
    pairs = open_pairs(spec)
    assert isinstance(pairs, WdsPairs) and len(pairs.urls) == 3
    batches, loader = _keys(pairs, 0, 7, bs=4)  # epoch 0 = 28 good pairs = 7 full batches of 4
    flat = [k for b in batches for k in b]
    assert sorted(flat) == sorted(f"{k:05d}" for k in range(30) if k not in (4, 17))
    assert flat != sorted(flat)  # shard order and shuffle buffer
    assert pairs.skipped.counts == {"corrupt image": 2}
    assert loader.state()["epoch"] == 0


def test_ranks_and_workers_split_the_shards(tmp_path):
    pairs = WdsPairs(write_shards(tmp_path / "d", n_shards=4, per=8))
    seen = []
    for rank in (0, 1):
        b, _ = _keys(pairs, 2, 8, bs=2, rank=rank, world=2)  # 4 readers, 1 shard (4 batches) each
        seen += [k for x in b for k in x]
    assert sorted(seen) == [f"{k:05d}" for k in range(32)]


def test_resume_from_recorded_position_continues_the_same_stream(tmp_path):
    pairs = WdsPairs(write_shards(tmp_path / "d", n_shards=4, per=9))
    full, _ = _keys(pairs, 2, 12)  # crosses into epoch 1
    head, loader = _keys(pairs, 2, 5)
    tail, _ = _keys(pairs, 2, 7, state=loader.state())
    assert head + tail == full


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no webdataset shards"):
        (tmp_path / "empty").mkdir()
        WdsPairs(str(tmp_path / "empty"))
    (tmp_path / "a.tar").write_bytes(b"hello, not a tar" * 100)
    with pytest.raises(DataError, match="not a tar"):
        open_pairs(str(tmp_path / "a.tar"))
    with pytest.raises(DataError, match="not found"):
        open_pairs(str(tmp_path / "b-{0..1}.tar"))
    with pytest.raises(DataError, match="gave no tar data"):
        open_pairs("pipe:cat /nonexistent/shard.tar")
    with pytest.raises(DataError, match="not found on PATH"):
        open_pairs("pipe:no-such-tool-xyz s.tar")
    with pytest.raises(ConfigError, match="workers"):
        check_workers(-1)


def test_pipe_shards_stream(tmp_path):
    spec = write_shards(tmp_path / "d", n_shards=2, per=4)
    pairs = open_pairs("pipe:cat " + spec)
    b, _ = _keys(pairs, 0, 2)
    assert sorted(k for x in b for k in x) == [f"{k:05d}" for k in range(8)]


def test_streamed_views_are_keyed_per_view_and_repeat_exactly(tmp_path):
    """--views on shards: each sample's view is picked per epoch, keyed 'KEY#viewV', and the same on a re-read
    (so a resumed run and the teacher cache see the same pixels under the same key)."""
    pairs = open_pairs(write_shards(tmp_path / "d"))

    def epoch0():
        src = WdsBatches(pairs, 4, 0, _tf, _tok, _tok, workers=0, views=3)
        return [(k, px) for b in BatchLoader(src, 0).iterate(0, 7) for k, px in zip(b[0], b[1])]
    a, b = epoch0(), epoch0()
    assert [k for k, _ in a] == [k for k, _ in b] and all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    views = {k.partition("#view")[2] or "0" for k, _ in a}
    assert views == {"0", "1", "2"}  # 28 samples over 3 views: every view is used
    with pytest.raises(ConfigError, match="use --decode cpu"):
        WdsBatches(pairs, 4, 0, _tf, _tok, _tok, workers=0, views=2, raw_images=True)


@pytest.mark.parametrize("cut", [1500, 3000, 8192, 10340])
def test_a_truncated_tar_never_yields_the_sample_at_the_cut(tmp_path, cut):
    """tarfile reads a cut stream without an error, so the member at the cut comes out short: a caption cut
    mid-word would train silently. The last sample read from a shard without its end marker is dropped, counted."""
    from edgeclip.data.wds import truncated
    write_shards(tmp_path, n_shards=1, per=6)
    whole = (tmp_path / "s-000.tar").read_bytes()
    (tmp_path / "s-001.tar").write_bytes(whole[:cut])
    assert not truncated(str(tmp_path / "s-000.tar")) and truncated(str(tmp_path / "s-001.tar"))
    pairs = WdsPairs(str(tmp_path / "s-{000..001}.tar"))
    got = [pairs.decode(s) for s in pairs.raw(0, 0, 0, 1, shuffle=False)]
    assert pairs.skipped.counts["last sample of a truncated tar"] == 1
    assert all(g is None or g[2] == f"pair {int(g[0]) % 6}" for g in got)  # every caption whole
