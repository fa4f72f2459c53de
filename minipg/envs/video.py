"""Streaming an evaluation's frames to an animated GIF, one frame at a time.

``evaluate --render rgb_array --video PATH.gif`` used to keep every frame
in a list and hand them all to Pillow at the end (Pillow's own multi-frame
GIF writer keeps a palette copy of every frame as well): 10 episodes of
CartPole at 600x400 came to 5000 frames and about 9 GB.  :class:`GifWriter`
writes each frame to the file as it comes, with Pillow's public GIF
helpers (``getheader`` / ``getdata``), on one global palette taken from the
first frame (each colour mapped to its nearest entry, a palette colour to itself) (the classic-control renderings have a handful of colours), each
frame after the first as the box that changed, so its memory does not grow
with the number of frames.
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
        self.previous = None                    # the last frame, (H, W, 3)
        self.table = None                       # colour -> palette index
        self.size = None
        self.frames = 0

    def append(self, frame):
        if frame is None:
            return
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ValueError(f"GifWriter: a frame is (H, W, 3) uint8, got shape {frame.shape}")
        rgb = frame[:, :, :3]
        if self.palette_image is None:
            self.size = rgb.shape[:2]
            self.palette_image = self._Image.fromarray(rgb).quantize(colors=256)
            colors = np.asarray(self.palette_image.getpalette()[:768], dtype=np.int64)
            self.colors = colors.reshape(-1, 3)
            info = {"loop": 0, "duration": self.duration}
            header, _ = self._gif.getheader(self.palette_image, None, info)
            self.fh.write(b"".join(header))
        elif rgb.shape[:2] != self.size:
            raise ValueError(f"GifWriter: frame of size {rgb.shape[:2]}, the first was "
                             f"{self.size}")
        top = left = 0
        if self.previous is not None:           # only the box that changed, as Pillow does
            h, w = self.size
            changed = rgb.reshape(h, w * 3) != self.previous.reshape(h, w * 3)
            rows = np.flatnonzero(changed.any(axis=1))
            if len(rows):
                cols = np.flatnonzero(changed[rows[0]:rows[-1] + 1].any(axis=0)) // 3
                top, left = int(rows[0]), int(cols[0])
                bottom, right = int(rows[-1]) + 1, int(cols[-1]) + 1
            else:
                bottom, right = 1, 1
            self.previous[top:bottom, left:right] = rgb[top:bottom, left:right]
            rgb = rgb[top:bottom, left:right]
        else:
            self.previous = rgb.copy()
        image = self._Image.fromarray(self._indices(rgb))
        image.putpalette(self.palette_image.getpalette())       # an "L" image becomes "P"
        offset = (left, top)
        for chunk in self._gif.getdata(image, offset=offset, duration=self.duration,
                                       disposal=1):
            self.fh.write(chunk)
        self.frames += 1

    def _indices(self, rgb):
        """The palette index of every pixel: each colour's nearest palette entry, looked
        up in a table of all 2**24 colours (16 MiB) filled as colours appear, so a colour
        of the palette maps to itself exactly."""
        packed = (rgb[:, :, 0].astype(np.int32) << 16) | (rgb[:, :, 1].astype(np.int32) << 8) \
            | rgb[:, :, 2]
        if self.table is None:
            self.table = np.full(2**24, -1, dtype=np.int16)
        index = self.table[packed]
        missing = index < 0
        if missing.any():
            new = np.unique(packed[missing])
            rgb_new = np.stack([new >> 16, (new >> 8) & 255, new & 255], axis=1)
            dist = ((rgb_new[:, None, :] - self.colors[None, :, :]) ** 2).sum(axis=2)
            self.table[new] = dist.argmin(axis=1)
            index = self.table[packed]
        return index.astype(np.uint8)

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
