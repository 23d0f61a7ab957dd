"""Writes test/fixtures/torch/: a small PyTorch CNN exported to ONNX by
PyTorch itself (torch.onnx.export), a 32x32 PNG, and PyTorch's own outputs
for that picture, as a second oracle for Layer Lens's ONNX path (the first is
the project's own writer against TF.js). Run once with Debian's PyTorch:

    apt-get install -y python3-torch && /usr/bin/python3 scripts/onnx/torchFixture.py

The tests read the committed files and never need PyTorch.
"""
import json
import os
import struct
import zlib

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'torch')
LABELS = ['airplane', 'bird', 'cat', 'dog', 'ship']


class TinyNet(nn.Module):
    """Conv-BN-ReLU6, a depthwise block with a residual Add, average pool, Linear, Softmax."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, len(LABELS))

    def forward(self, x):
        x = self.stem(x)
        x = self.dw(x)
        x = x + self.pw(x)
        x = torch.flatten(self.pool(x), 1)
        return torch.softmax(self.classifier(x), dim=1)


def png(path, rgb, w, h):
    raw = b''.join(b'\x00' + bytes(rgb[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xFFFFFFFF)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def main():
    torch.manual_seed(7)
    net = TinyNet()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
    png(os.path.join(OUT, 'picture.png'), pixels.flatten().tolist(), 32, 32)
    # Layer Lens's "zeroOne" preprocessing: pixels / 255, NCHW.
    x = (pixels.float() / 255).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        probs = net(x)[0]
    torch.onnx.export(net, x, os.path.join(OUT, 'tiny-torch.onnx'), opset_version=13, input_names=['input'], output_names=['probabilities'],
                      dynamic_axes={'input': {0: 'batch'}, 'probabilities': {0: 'batch'}})
    with open(os.path.join(OUT, 'labels.txt'), 'w') as f:
        f.write('\n'.join(LABELS) + '\n')
    with open(os.path.join(OUT, 'pytorch-outputs.json'), 'w') as f:
        json.dump({'torch': torch.__version__, 'image': 'picture.png', 'normalization': 'zeroOne',
                   'probabilities': [float(p) for p in probs], 'top1': LABELS[int(probs.argmax())]}, f, indent=2)
        f.write('\n')
    print('wrote', os.path.relpath(OUT), LABELS[int(probs.argmax())], [round(float(p), 4) for p in probs])


if __name__ == '__main__':
    main()
