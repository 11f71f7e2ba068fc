"""A slide show on an X display, for the `screen` source's test: one borderless Tk window
over the whole screen, a new slide (title, background) every few seconds, then it stays on
the last one.

    DISPLAY=:N python tests/slideshow.py SECONDS "Title one" "Title two" ...
"""

from __future__ import annotations

import sys
import tkinter as tk

BACKGROUNDS = ("#ffffff", "#1d2b53", "#f4e8c1", "#0b5d1e")
INK = ("#111111", "#f0f0f0", "#222222", "#ffffff")


def main() -> None:
    seconds, titles = float(sys.argv[1]), sys.argv[2:]
    root = tk.Tk()
    root.overrideredirect(True)  # no window manager on the display: no decorations either
    width, height = root.winfo_screenwidth(), root.winfo_screenheight()
    root.geometry(f"{width}x{height}+0+0")
    label = tk.Label(root, font=("DejaVu Sans", max(24, height // 12), "bold"), wraplength=width - 80)
    label.pack(expand=True, fill="both")

    def show(i: int) -> None:
        label.config(text=titles[i], bg=BACKGROUNDS[i % len(BACKGROUNDS)], fg=INK[i % len(INK)])
        print(f"slide {i}", flush=True)
        if i + 1 < len(titles):
            root.after(int(seconds * 1000), show, i + 1)

    show(0)
    root.mainloop()


if __name__ == "__main__":
    main()
