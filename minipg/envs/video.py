"""Streaming an evaluation's frames to an animated GIF, one frame at a time.

``evaluate --render rgb_array --video PATH.gif`` used to keep every frame
in a list and hand them all to Pillow at the end (Pillow's own multi-frame
GIF writer keeps a palette copy of every frame as well): 10 episodes of
CartPole at 600x400 came to 5000 frames and about 9 GB.  :class:`GifWriter`
writes each frame to the file as it comes, with Pillow's public GIF
helpers (``getheader`` / ``getdata``), on one global palette taken from the
first frame (the classic-control renderings have a handful of colours), so
its memory does not grow with the number of frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GifWriter"]


class GifWriter:
    """``append(frame)`` an (H, W, 3) uint8 frame at a time; ``close()`` ends the file.

    ``duration`` is each frame's display time in milliseconds; the GIF loops
    forever.  Frames of another size than the first are refused (ValueError).
    A context manager; ``frames`` counts what was written.
    """

    def __init__(self, path, duration=20):
        try:
            from PIL import GifImagePlugin, Image
        except ImportError:
            raise ImportError("writing a GIF needs Pillow: pip install 'minipg[render]'") \
                from None
        self._Image, self._gif = Image, GifImagePlugin
        self.path = path
        self.duration = int(duration)
        self.fh = open(path, "wb")
        self.palette_image = None
        self.size = None
        self.frames = 0

    def append(self, frame):
        if frame is None:
            return
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ValueError(f"GifWriter: a frame is (H, W, 3) uint8, got shape {frame.shape}")
        rgb = self._Image.fromarray(frame[:, :, :3])
        if self.palette_image is None:
            self.size = rgb.size
            self.palette_image = rgb.quantize(colors=256)
            info = {"loop": 0, "duration": self.duration}
            header, _ = self._gif.getheader(self.palette_image, None, info)
            self.fh.write(b"".join(header))
            image = self.palette_image
        else:
            if rgb.size != self.size:
                raise ValueError(f"GifWriter: frame of size {rgb.size}, the first was "
                                 f"{self.size}")
            image = rgb.quantize(palette=self.palette_image, dither=self._Image.Dither.NONE)
        for chunk in self._gif.getdata(image, duration=self.duration, disposal=1):
            self.fh.write(chunk)
        self.frames += 1

    def close(self):
        if self.fh is not None:
            if self.frames:
                self.fh.write(b";")                 # the GIF trailer
            self.fh.close()
            self.fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
