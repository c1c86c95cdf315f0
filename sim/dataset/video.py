"""mp4 encoding and decoding of RGB frame sequences with PyAV.

Written videos are H.264 (libx264), ``yuv420p``: every browser, ffmpeg build and LeRobot
version plays them, and libx264 encodes a 224x224 frame in about a millisecond. ``codec="av1"``
(libsvtav1, LeRobot's default) gives smaller files. Decoding takes whatever codec the
installed PyAV/ffmpeg decodes (h264, hevc, av1, mpeg4, ...).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

#: codec name (as info.json records it) -> ffmpeg encoder
ENCODERS = {"h264": "libx264", "av1": "libsvtav1"}


def _decode_error(path: Path, err: Exception) -> ValueError:
    return ValueError(f"{path}: cannot decode the video ({type(err).__name__}: {err}); the file is truncated or "
                      "corrupt: re-record that episode, or re-download the dataset")


def encode_video(
    path: Path,
    frames: np.ndarray,
    fps: int,
    codec: str = "h264",
    crf: int = 18,
    keyframe_interval: int = 10,
) -> None:
    """Encode ``frames`` uint8 ``[T, H, W, 3]`` (RGB) as an mp4 of ``fps`` frames per second.

    Frame ``i`` gets presentation time ``i / fps`` seconds. ``crf`` is the constant-rate quality
    (lower is better; 18 is visually lossless for H.264). ``keyframe_interval`` bounds how many
    frames a seek to one frame decodes (LeRobot reads frames one by one). H and W must be even
    (4:2:0 chroma). The file appears at ``path`` only once complete.
    """
    if codec not in ENCODERS:
        raise ValueError(f"codec must be one of {sorted(ENCODERS)}, got {codec!r}")
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be a uint8 array [T, H, W, 3], got "
                         f"{getattr(frames, 'dtype', type(frames).__name__)} {list(getattr(frames, 'shape', []))}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("frames must hold at least one frame")
    if h % 2 or w % 2:
        raise ValueError(f"frame height and width must be even for yuv420p video, got {h}x{w}; "
                         "use an even render_size")
    if not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"fps must be a positive int, got {fps!r}")
    if not 0 <= crf <= 63:
        raise ValueError(f"crf must be in [0, 63], got {crf}")
    if keyframe_interval < 1:
        raise ValueError(f"keyframe_interval must be >= 1, got {keyframe_interval}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    options = {"crf": str(crf), "g": str(keyframe_interval)}
    if codec == "h264":
        options["preset"] = "veryfast"
    else:
        options["preset"] = "10"
        # SVT-AV1 prints its configuration banner to stderr unless told otherwise (read at encoder init)
        os.environ.setdefault("SVT_LOG", "1")
    time_base = Fraction(1, fps)
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream(ENCODERS[codec], rate=fps, options=options)
            assert isinstance(stream, av.VideoStream)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for i in range(t):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                frame.pts, frame.time_base = i, time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def decode_video(
    path: Path, start_s: float | None = None, end_s: float | None = None, tolerance_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the first video stream of ``path`` to ``(frames uint8 [T, H, W, 3], timestamps [T] seconds)``.

    With ``start_s``/``end_s`` only frames with ``start_s - tolerance_s <= t < end_s - tolerance_s``
    are returned (a v3.0 file holds many episodes); the decoder seeks to ``start_s`` first.
    A missing file is ``FileNotFoundError``; an unreadable, truncated or corrupt one ``ValueError``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    lo = -np.inf if start_s is None else start_s - tolerance_s
    hi = np.inf if end_s is None else end_s - tolerance_s
    frames: list[np.ndarray] = []
    times: list[float] = []
    # One reformatter per call, single-threaded: PyAV >= 17 converts colours on a slice-thread pool
    # that a forked DataLoader worker inherits without its threads, and waits on forever.
    reformatter = VideoReformatter()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream; the file is not a dataset video")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start_s is not None and start_s > 0 and stream.time_base is not None:
                container.seek(int(lo / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = frame.time
                if t is None:
                    raise ValueError(f"{path}: a frame has no timestamp; the file is corrupt: re-encode it")
                if t < lo:
                    continue
                if t >= hi:
                    break
                frames.append(reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray())
                times.append(t)
    except (av.error.FFmpegError, OSError) as e:
        raise _decode_error(path, e) from e
    if not frames:
        raise ValueError(f"{path}: no frames decoded"
                         + ("" if start_s is None else f" between {start_s:.3f} s and {end_s:.3f} s")
                         + "; the file is truncated or corrupt: re-record or re-download it")
    return np.stack(frames), np.asarray(times, np.float64)
