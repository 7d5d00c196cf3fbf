"""The graph zoo: small versions of the CNNs people port, each with its paper's real block.

Each trains on 28x28 gray or 32x32 RGB in seconds, and names its nodes the way torchvision
names the modules (`layer2.0.downsample.0`, `features.denseblock1.denselayer1.conv1`, ...), so
a parameter's name says where in the block it sits. Each is a function of
(input_shape, num_classes, seed, dtype), as skylark.models' built-ins are.

    resnet        He et al. 2016: basic blocks (conv-BN-ReLU-conv-BN + shortcut, then ReLU);
                  the second stage opens with stride 2 and a 1x1 conv + BN projection shortcut
    mobilenet-v2  Sandler et al. 2018: inverted residuals (1x1 expand, depthwise 3x3, ReLU6,
                  linear 1x1 bottleneck); the residual only where shapes match (stride 1)
    densenet      Huang et al. 2017: a dense block (each layer BN-ReLU-1x1-BN-ReLU-3x3, its
                  output concatenated to its input) and a transition (BN-ReLU-1x1-avgpool 2)
    shufflenet    Ma et al. 2018 (ShuffleNet V2): a stride-2 unit (two branches concatenated),
                  a stride-1 unit (channel split, one branch, concat), each then shuffled
    inception     Szegedy et al. 2015 (GoogLeNet): parallel 1x1, 1x1-3x3, 1x1-5x5 and
                  maxpool-1x1 branches concatenated along the channels; BN eps 1e-3
    efficientnet  Tan & Le 2019: MBConv blocks (1x1 expand, depthwise 3x3, SiLU) with
                  squeeze-excite (adaptive average pool to 1x1, 1x1 convs, sigmoid, a
                  broadcast Multiply), a linear bottleneck and a residual
"""

from __future__ import annotations

from .graph import INPUT, Graph
from .layers import (
    Add,
    BatchNorm2d,
    ChannelSlice,
    Concat,
    Conv2D,
    Dense,
    GlobalAvgPool2D,
    MaxPool2D,
    Multiply,
    ReLU,
)
from .layers import AvgPool2D as AvgPool2d
from .layers.base import as_dtype


class _Net:
    """A Graph under construction: `net(name, layer_class, *args, inputs=..., **kwargs)` adds
    a node, giving a layer with parameters the model's dtype and its own seed."""

    def __init__(self, seed: int, dtype) -> None:
        self.graph, self.seed, self.dtype = Graph(), seed, as_dtype(dtype)

    def __call__(self, name: str, cls, *args, inputs=None, **kwargs) -> str:
        if cls.param_names:
            kwargs.update(dtype=self.dtype, seed=self.seed + len(self.graph))
        return self.graph.add(name, cls(*args, **kwargs), inputs)

    def conv_bn(self, name: str, x: str, cin: int, cout: int, k: int, stride: int = 1,
                groups: int = 1, act=ReLU, conv="0", bn="1", act_name="2", eps=1e-5) -> str:
        """conv (no bias: the BN's shift replaces it) -> BatchNorm -> activation (None: none),
        torchvision's Conv2dNormActivation: nodes {name}.0, {name}.1, {name}.2."""
        p = f"{name}." if name else ""
        h = self(f"{p}{conv}", Conv2D, cin, cout, k, stride, k // 2, groups=groups,
                 bias=False, inputs=x)
        h = self(f"{p}{bn}", BatchNorm2d, cout, eps=eps)
        return h if act is None else self(f"{p}{act_name}", act)

    def head(self, x: str, channels: int, num_classes: int) -> Graph:
        self("avgpool", GlobalAvgPool2D, inputs=x)
        self("fc", Dense, channels, num_classes)
        return self.graph.check()


def _activations():
    """The activation layers the zoo needs beyond ReLU (imported late: they live with the
    other activations in skylark.layers)."""
    from . import layers as L

    return L.ReLU6, L.SiLU, L.Sigmoid, L.AdaptiveAvgPool2d, L.ChannelShuffle


def resnet(input_shape=(1, 28, 28), *, num_classes=10, seed=0, dtype="float32") -> Graph:
    """conv 3x3 (16) BN ReLU; layer1: a basic block 16 -> 16; layer2: a basic block 16 -> 32
    with stride 2 and a projection shortcut (1x1 conv stride 2 + BN); global average pool;
    fc."""
    net = _Net(seed, dtype)
    h = net.conv_bn("", INPUT, input_shape[0], 16, 3, conv="conv1", bn="bn1", act_name="relu")

    def basic_block(name, x, cin, cout, stride):
        h = net(f"{name}.conv1", Conv2D, cin, cout, 3, stride, 1, bias=False, inputs=x)
        h = net(f"{name}.bn1", BatchNorm2d, cout)
        h = net(f"{name}.relu1", ReLU)
        h = net(f"{name}.conv2", Conv2D, cout, cout, 3, 1, 1, bias=False)
        h = net(f"{name}.bn2", BatchNorm2d, cout)
        shortcut = x
        if stride != 1 or cin != cout:
            shortcut = net(f"{name}.downsample.0", Conv2D, cin, cout, 1, stride, bias=False,
                           inputs=x)
            shortcut = net(f"{name}.downsample.1", BatchNorm2d, cout)
        h = net(f"{name}.add", Add, inputs=[h, shortcut])  # the residual: before the ReLU
        return net(f"{name}.relu2", ReLU)

    h = basic_block("layer1.0", h, 16, 16, 1)
    h = basic_block("layer2.0", h, 16, 32, 2)
    return net.head(h, 32, num_classes)


def mobilenet_v2(input_shape=(1, 28, 28), *, num_classes=10, seed=0,
                 dtype="float32") -> Graph:
    """conv 3x3 (16) BN ReLU6; inverted residuals 16 -> 24 (t=3, stride 2) and 24 -> 24
    (t=3, stride 1, residual); 1x1 conv (64) BN ReLU6; global average pool; fc."""
    ReLU6 = _activations()[0]
    net = _Net(seed, dtype)
    h = net.conv_bn("features.0", INPUT, input_shape[0], 16, 3, act=ReLU6)

    def inverted_residual(name, x, cin, cout, stride, t):
        hidden = cin * t
        h = net.conv_bn(f"{name}.conv.0", x, cin, hidden, 1, act=ReLU6)  # expand
        h = net.conv_bn(f"{name}.conv.1", h, hidden, hidden, 3, stride, groups=hidden,
                        act=ReLU6)  # depthwise
        h = net.conv_bn(f"{name}.conv", h, hidden, cout, 1, act=None, conv="2",
                        bn="3")  # the linear bottleneck: no activation
        if stride == 1 and cin == cout:
            h = net(f"{name}.add", Add, inputs=[x, h])
        return h

    h = inverted_residual("features.1", h, 16, 24, 2, 3)
    h = inverted_residual("features.2", h, 24, 24, 1, 3)
    h = net.conv_bn("features.3", h, 24, 64, 1, act=ReLU6)
    return net.head(h, 64, num_classes)


def densenet(input_shape=(1, 28, 28), *, num_classes=10, seed=0, dtype="float32") -> Graph:
    """conv 3x3 (16); a dense block of two BN-ReLU-1x1(32)-BN-ReLU-3x3(growth 8) layers, each
    concatenated to its input (16 -> 24 -> 32 channels); a transition (BN ReLU 1x1 (16) avg
    pool 2); BN ReLU; global average pool; fc."""
    net = _Net(seed, dtype)
    h = net("features.conv0", Conv2D, input_shape[0], 16, 3, 1, 1, bias=False, inputs=INPUT)
    growth, c = 8, 16
    for i in (1, 2):
        name = f"features.denseblock1.denselayer{i}"
        x = h
        h = net(f"{name}.norm1", BatchNorm2d, c, inputs=x)
        h = net(f"{name}.relu1", ReLU)
        h = net(f"{name}.conv1", Conv2D, c, 4 * growth, 1, bias=False)
        h = net(f"{name}.norm2", BatchNorm2d, 4 * growth)
        h = net(f"{name}.relu2", ReLU)
        h = net(f"{name}.conv2", Conv2D, 4 * growth, growth, 3, 1, 1, bias=False)
        h = net(f"{name}.cat", Concat, inputs=[x, h])  # the input first, as torch.cat does
        c += growth
    h = net("features.transition1.norm", BatchNorm2d, c)
    h = net("features.transition1.relu", ReLU)
    h = net("features.transition1.conv", Conv2D, c, c // 2, 1, bias=False)
    h = net("features.transition1.pool", AvgPool2d, 2)
    h = net("features.norm5", BatchNorm2d, c // 2)
    h = net("features.relu5", ReLU)
    return net.head(h, c // 2, num_classes)


def shufflenet(input_shape=(1, 28, 28), *, num_classes=10, seed=0,
               dtype="float32") -> Graph:
    """conv 3x3 (24) BN ReLU; a stride-2 unit (branch1: depthwise 3x3 s2 BN, 1x1 BN ReLU;
    branch2: 1x1 BN ReLU, depthwise 3x3 s2 BN, 1x1 BN ReLU; concat; shuffle 2) and a stride-1
    unit (split the channels in halves, branch2 on the second half, concat with the first,
    shuffle 2); 1x1 conv (64) BN ReLU; global average pool; fc."""
    ChannelShuffle = _activations()[4]
    net = _Net(seed, dtype)
    c = 24
    h = net.conv_bn("conv1", INPUT, input_shape[0], c, 3)

    def branch2(name, x, cin, cout, stride):
        h = net.conv_bn(f"{name}.branch2", x, cin, cout, 1, conv="0", bn="1", act_name="2")
        h = net.conv_bn(f"{name}.branch2", h, cout, cout, 3, stride, groups=cout, act=None,
                        conv="3", bn="4")
        return net.conv_bn(f"{name}.branch2", h, cout, cout, 1, conv="5", bn="6",
                           act_name="7")

    name = "stage2.0"  # stride 2: both branches see the whole input
    b1 = net.conv_bn(f"{name}.branch1", h, c, c, 3, 2, groups=c, act=None)
    b1 = net.conv_bn(f"{name}.branch1", b1, c, c, 1, conv="2", bn="3", act_name="4")
    b2 = branch2(name, h, c, c, 2)
    net(f"{name}.cat", Concat, inputs=[b1, b2])
    h = net(f"{name}.shuffle", ChannelShuffle, 2)
    c *= 2
    name = "stage2.1"  # stride 1: x.chunk(2, dim=1), one half through branch2
    x1 = net(f"{name}.split.0", ChannelSlice, 0, c // 2, inputs=h)
    x2 = net(f"{name}.split.1", ChannelSlice, c // 2, c, inputs=h)
    b2 = branch2(name, x2, c // 2, c // 2, 1)
    net(f"{name}.cat", Concat, inputs=[x1, b2])
    h = net(f"{name}.shuffle", ChannelShuffle, 2)
    h = net.conv_bn("conv5", h, c, 64, 1)
    return net.head(h, 64, num_classes)


def inception(input_shape=(1, 28, 28), *, num_classes=10, seed=0, dtype="float32") -> Graph:
    """conv 3x3 (16) BN ReLU; max pool 2; an inception block: 1x1 (8) | 1x1 (8) -> 3x3 (12) |
    1x1 (4) -> 5x5 (6) | max pool 3x3 stride 1 pad 1 -> 1x1 (6), concatenated (32); global
    average pool; fc. Every conv is GoogLeNet's BasicConv2d: conv (no bias), BN (eps 1e-3:
    GoogLeNet's, not torch's default), ReLU."""
    net = _Net(seed, dtype)

    def basic_conv(name, x, cin, cout, k):
        return net.conv_bn(name, x, cin, cout, k, conv="conv", bn="bn", act_name="relu",
                           eps=1e-3)

    h = basic_conv("conv1", INPUT, input_shape[0], 16, 3)
    x = net("maxpool1", MaxPool2D, 2)
    b1 = basic_conv("inception3a.branch1", x, 16, 8, 1)
    b2 = basic_conv("inception3a.branch2.0", x, 16, 8, 1)
    b2 = basic_conv("inception3a.branch2.1", b2, 8, 12, 3)
    b3 = basic_conv("inception3a.branch3.0", x, 16, 4, 1)
    b3 = basic_conv("inception3a.branch3.1", b3, 4, 6, 5)
    b4 = net("inception3a.branch4.0", MaxPool2D, 3, 1, 1, inputs=x)
    b4 = basic_conv("inception3a.branch4.1", b4, 16, 6, 1)
    h = net("inception3a.cat", Concat, inputs=[b1, b2, b3, b4])
    return net.head(h, 32, num_classes)


def efficientnet(input_shape=(1, 28, 28), *, num_classes=10, seed=0,
                 dtype="float32") -> Graph:
    """conv 3x3 (16) BN SiLU; an MBConv block with squeeze-excite (1x1 expand to 64 BN SiLU,
    depthwise 3x3 BN SiLU, SE: adaptive avg pool 1x1, 1x1 conv 64 -> 4, SiLU, 1x1 conv 4 ->
    64, sigmoid, Multiply; 1x1 project to 16 BN; residual); 1x1 conv (64) BN SiLU; global
    average pool; fc."""
    _, SiLU, Sigmoid, AdaptiveAvgPool2d, _ = _activations()
    net = _Net(seed, dtype)
    x = net.conv_bn("features.0", INPUT, input_shape[0], 16, 3, act=SiLU)
    name = "features.1.0.block"
    h = net.conv_bn(f"{name}.0", x, 16, 64, 1, act=SiLU)  # expand
    h = net.conv_bn(f"{name}.1", h, 64, 64, 3, groups=64, act=SiLU)  # depthwise
    se = f"{name}.2"  # squeeze-excite: a per-channel gate from the channel means
    net(f"{se}.avgpool", AdaptiveAvgPool2d, 1, inputs=h)
    net(f"{se}.fc1", Conv2D, 64, 4, 1)
    net(f"{se}.activation", SiLU)
    net(f"{se}.fc2", Conv2D, 4, 64, 1)
    gate = net(f"{se}.scale_activation", Sigmoid)
    h = net(f"{se}.mul", Multiply, inputs=[h, gate])  # (N, 64, H, W) * (N, 64, 1, 1)
    h = net.conv_bn(f"{name}.3", h, 64, 16, 1, act=None)  # project: linear
    h = net("features.1.0.add", Add, inputs=[x, h])
    h = net.conv_bn("features.2", h, 16, 64, 1, act=SiLU)
    return net.head(h, 64, num_classes)


ZOO = {"resnet": resnet, "mobilenet-v2": mobilenet_v2, "densenet": densenet,
       "shufflenet": shufflenet, "inception": inception, "efficientnet": efficientnet}
