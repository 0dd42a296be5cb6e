"""Writes the image-folder fixtures of tests/test_images.c (committed, so CI needs no PIL).

    cd tests/data/images && /usr/bin/python3 make_fixtures.py

folder/: torchvision's ImageFolder layout, two classes of 4x3 (w x h) images: PNG (RGB, gray,
palette, RGBA, 16-bit) and a JPEG; the expected pixels are PIL's, saved beside as expected.txt.
bad/: an image of another size; corrupt/: a truncated PNG; notimage/: text named .png.
"""
import os
import shutil

from PIL import Image

W, H = 4, 3


def rgb(seed):
    return Image.frombytes("RGB", (W, H), bytes((seed * 37 + i * 11) % 256 for i in range(W * H * 3)))


for d in ("folder", "bad", "corrupt", "notimage"):
    shutil.rmtree(d, ignore_errors=True)
os.makedirs("folder/cat")
os.makedirs("folder/dog")
os.makedirs("folder/.hidden")
rgb(1).save("folder/cat/a.png")
rgb(2).convert("L").save("folder/cat/b.png")
rgb(3).convert("P", palette=Image.ADAPTIVE, colors=8).save("folder/dog/c.png")
rgba = rgb(4).convert("RGBA")
rgba.putalpha(128)
rgba.save("folder/dog/d.PNG")
Image.frombytes("I;16", (W, H), bytes(range(W * H * 2))).save("folder/dog/e.png")
rgb(5).save("folder/dog/f.jpg", quality=95)
with open("folder/dog/notes.txt", "w") as f:
    f.write("not an image: skipped by its name\n")
rgb(6).save("folder/.hidden/g.png")
# The expected values: PIL's RGB and L conversions of what libpng/libjpeg decode.
with open("folder/expected.txt", "w") as f:
    for path in ("cat/a.png", "cat/b.png", "dog/c.png", "dog/d.PNG", "dog/f.jpg"):
        im = Image.open(os.path.join("folder", path))
        if im.mode == "RGBA":
            im = Image.frombytes("RGB", im.size, bytes(
                b for i, b in enumerate(im.tobytes()) if i % 4 != 3))
        for mode in ("RGB", "L"):
            f.write("%s %s %s\n" % (path, mode, " ".join(str(b) for b in im.convert(mode).tobytes())))
os.makedirs("bad/one")
rgb(1).save("bad/one/a.png")
rgb(2).resize((5, 3)).save("bad/one/b.png")
os.makedirs("corrupt/one")
rgb(1).save("corrupt/one/a.png")
with open("corrupt/one/a.png", "rb") as f:
    data = f.read()
with open("corrupt/one/b.png", "wb") as f:
    f.write(data[: len(data) - 20])
os.makedirs("notimage/one")
with open("notimage/one/a.png", "w") as f:
    f.write("hello\n")
