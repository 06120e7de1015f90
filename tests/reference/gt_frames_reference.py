"""Reference for tests/dataset/dataset.test.ts: decode JPEG files with PIL (libjpeg-turbo) and resize them with
PIL's bicubic filter (what DiffTalk's data loader does), write raw RGB bytes next to each input as <file>.<size>.rgb
(size 0 = no resize). Usage: gt_frames_reference.py SIZE FILE..."""
import sys
from PIL import Image

size = int(sys.argv[1])
for f in sys.argv[2:]:
    im = Image.open(f).convert('RGB')
    if size:
        im = im.resize((size, size), Image.BICUBIC)
    with open(f'{f}.{size}.rgb', 'wb') as out:
        out.write(im.tobytes())
