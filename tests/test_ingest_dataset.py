"""ShardDataset: window contents, splits without overlap, batches, stats and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from foresight.errors import InputError
from foresight.ingest import ShardDataset, run_ingest


@pytest.fixture
def shards(tmp_path, tiny_cfg, clips):
    """Three 10 fps sources (two with sensors) ingested with window 16, stride 8."""
    channels = tiny_cfg.data.channels
    for i, n in enumerate([40, 56, 33]):
        video = clips.video(tmp_path / "in" / f"clip_{i}.mp4", n, 10.0, 64 + 16 * i, 48)
        if i != 2:
            clips.csv(video.with_suffix(".csv"), np.arange(n) / 10.0 + 0.05 * i, channels)
    out = tmp_path / "out"
    run_ingest([tmp_path / "in"], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    return out


def _first_index(clips, frames):
    return [clips.index(f) for f in frames]


def test_windows_match_the_sources(shards, clips):
    ds = ShardDataset(shards)
    assert (ds.window, ds.stride, ds.channels) == (16, 8, ds.channels)
    assert ds.data["image_size"] == 32 and len(ds.channels) == 6
    assert [s["windows"] for s in ds.sources] == [4, 6, 3] and len(ds) == 13
    for i in range(len(ds)):
        frames, sensors = ds.read_window(i)
        assert frames.shape == (16, 32, 32, 3) and frames.dtype == np.uint8
        assert sensors.shape == (16, 6) and sensors.dtype == np.float32
    frames, sensors = ds.read_window(5)  # source 1, its window 1: frames 8..23
    assert _first_index(clips, frames) == list(range(8, 24))
    raw = np.fromfile(shards / ds.sources[1]["dir"] / "sensors.f32", "<f4").reshape(-1, 6)
    np.testing.assert_array_equal(sensors, raw[8:24])
    assert np.isnan(ds.read_window(12)[1]).all()  # clip_2 has no CSV
    with pytest.raises(IndexError):
        ds.read_window(13)
    assert ShardDataset(shards / "manifest.json").sources == ds.sources


def test_split_holds_out_whole_sources(shards):
    ds = ShardDataset(shards)
    train, val = ds.split(0.3, seed=1)
    ids_t, ids_v = {s["id"] for s in train.sources}, {s["id"] for s in val.sources}
    assert ids_t and ids_v and not ids_t & ids_v and ids_t | ids_v == {s["id"] for s in ds.sources}
    assert len(train) + len(val) == len(ds)
    again = ds.split(0.3, seed=1)
    assert [s["id"] for s in again[1].sources] == [s["id"] for s in val.sources]
    assert val.read_window(0)[0].shape == (16, 32, 32, 3)


def test_split_of_one_source_is_by_time(tmp_path, tiny_cfg, clips):
    video = clips.video(tmp_path / "only.mp4", 100, 10.0)
    run_ingest([video], tmp_path / "out", tiny_cfg.data, tiny_cfg.ingest, progress=False)
    ds = ShardDataset(tmp_path / "out")
    assert len(ds) == 11
    train, val = ds.split(0.25)
    assert len(val) == 3 and len(train) == 7  # the window overlapping val is dropped
    seen_train = {clips.index(f) for i in range(len(train)) for f in train.read_window(i)[0]}
    seen_val = {clips.index(f) for i in range(len(val)) for f in val.read_window(i)[0]}
    assert max(seen_train) < min(seen_val)
    assert min(seen_val) == 64 and max(seen_val) == 95


def test_batches_and_ordered_pass(shards):
    ds = ShardDataset(shards)
    rng = np.random.default_rng(0)
    frames, sensors = next(ds.batches(5, rng))
    assert frames.shape == (5, 16, 32, 32, 3) and frames.dtype == np.uint8
    assert sensors.shape == (5, 16, 6) and sensors.dtype == np.float32
    batches = ds.batches(4, rng, window=6)
    for _ in range(3):
        frames, sensors = next(batches)
        assert frames.shape == (4, 6, 32, 32, 3) and sensors.shape == (4, 6, 6)
    with pytest.raises(ValueError):
        next(ds.batches(2, rng, window=17))
    passes = list(ds.iter_windows(5))
    assert [len(f) for f, _ in passes] == [5, 5, 3]
    np.testing.assert_array_equal(passes[1][0][2], ds.read_window(7)[0])
    # a limited pass spreads its windows over all of the footage, first and last included
    spread = [f for f, _ in ds.iter_windows(2, limit=4)]
    assert [len(f) for f in spread] == [2, 2]
    np.testing.assert_array_equal(spread[0][0], ds.read_window(0)[0])
    np.testing.assert_array_equal(spread[0][1], ds.read_window(4)[0])
    np.testing.assert_array_equal(spread[1][1], ds.read_window(len(ds) - 1)[0])
    assert sum(len(f) for f, _ in ds.iter_windows(4, limit=100)) == len(ds)


def test_sensor_stats_ignore_missing_values(shards):
    ds = ShardDataset(shards)
    mean, std = ds.sensor_stats()
    rows = [
        np.fromfile(shards / s["dir"] / "sensors.f32", "<f4").reshape(-1, 6) for s in ds.sources
    ]
    every = np.concatenate(rows).astype(np.float64)
    np.testing.assert_allclose(mean, np.nanmean(every, axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, np.nanstd(every, axis=0), rtol=1e-4)
    assert mean.dtype == np.float32 and mean.shape == (6,)


def test_missing_files_give_clear_errors(shards, tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        ShardDataset(tmp_path / "nowhere")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json: not a readable JSON manifest"):
        ShardDataset(tmp_path / "bad.json")
    ds = ShardDataset(shards)
    frames = shards / ds.sources[1]["dir"] / "frames.u8"
    frames.write_bytes(frames.read_bytes()[:-10])
    with pytest.raises(InputError, match="frames.u8: .* bytes, expected"):
        ShardDataset(shards)
    frames.unlink()
    with pytest.raises(InputError, match="frames.u8: missing"):
        ShardDataset(shards)
