"""Your own network for the three-regime analysis (README "Your own model").

A factory is any function returning a torch.nn.Module that maps images [N, C, H, W] to logits
[N, num_classes]. Arguments named in_channels and num_classes are filled in from the data set;
the others come from model.kwargs in the config (part of the run's key, as is this file's
content: editing it retrains the networks it builds).
"""

import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU stages (8 and 16 channels x width), a max pool between them, global
    average pooling and a linear classifier."""

    def __init__(self, width: int = 1, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8 * width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8 * width)
        self.conv2 = nn.Conv2d(8 * width, 16 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16 * width)
        self.fc = nn.Linear(16 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2, ceil_mode=True)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def small_cnn(width: int = 1, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    return SmallCNN(width, in_channels, num_classes)
