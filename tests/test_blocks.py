import torch

from edgehemo.train.blocks import CBAM, ChannelAttention, SpatialAttention, SqueezeExcitation


def test_blocks_keep_shape_and_gate_between_zero_and_one():
    x = torch.randn(2, 16, 8, 8)
    for block in (SqueezeExcitation(16), ChannelAttention(16), SpatialAttention(), CBAM(16)):
        assert block(x).shape == x.shape
    with torch.no_grad():
        channel = ChannelAttention(16).attention(x)
        spatial = SpatialAttention().attention(x)
    assert channel.shape == (2, 16, 1, 1) and spatial.shape == (2, 1, 8, 8)
    assert float(channel.min()) > 0 and float(channel.max()) < 1


def test_cbam_is_channel_then_spatial():
    torch.manual_seed(0)
    block = CBAM(8).eval()
    x = torch.randn(1, 8, 6, 6)
    expected = block.spatial(x * block.channel.attention(x))
    assert torch.allclose(block(x), expected)


def test_spatial_attention_uses_channel_mean_and_max():
    block = SpatialAttention(kernel_size=1)
    with torch.no_grad():
        block.conv.weight[:] = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
        block.conv.bias.zero_()
    x = torch.tensor([[[[1.0]], [[3.0]]]])  # mean 2, max 3
    assert torch.allclose(block.attention(x), torch.sigmoid(torch.tensor(2.0)).view(1, 1, 1, 1))


def test_export_friendly_pooling_equals_the_reductions():
    from edgehemo.train.blocks import channel_max, channel_mean, global_average, global_max

    x = torch.randn(3, 16, 5, 7)
    assert torch.allclose(global_average(x), x.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    assert torch.equal(global_max(x), x.amax(dim=(2, 3), keepdim=True))
    assert torch.allclose(channel_mean(x), x.mean(dim=1, keepdim=True), atol=1e-6)
    assert torch.equal(channel_max(x), x.amax(dim=1, keepdim=True))
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(channel_max(channels_last), x.amax(dim=1, keepdim=True))


def test_tflite_graph_gives_the_same_function():
    from edgehemo.train.blocks import attention_graph
    from edgehemo.train.registry import create_model

    torch.manual_seed(0)
    for name in ("cbam_cnn", "sa_cnn", "se_cnn", "hemonet"):  # hemonet at 64x64: 4x4x256 flatten
        model = create_model(name, input_size=64).eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            eager = model(x)
            with attention_graph("tflite"):
                for_tflite = model(x)
        assert torch.allclose(eager, for_tflite, atol=1e-5), name


def test_strip_convolution_equals_the_plain_one():
    from edgehemo.train.blocks import strip_convolution

    torch.manual_seed(0)
    x = torch.randn(2, 2, 16, 24)
    for size in (1, 3, 7, 9):
        conv = torch.nn.Conv2d(2, 1, size, padding=size // 2)
        for strip in (2, 4, 8, 24):
            with torch.no_grad():
                strips = strip_convolution(conv, [x[:, :1], x[:, 1:]], strip)
            assert strips.shape == (2, 1, 16, 24)
            assert torch.allclose(strips, conv(x), atol=1e-5), (size, strip)


def test_strip_kernel_computes_a_multichannel_convolution_on_strips():
    from edgehemo.train.blocks import from_strips, strip_kernel, to_strips

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 12)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    for strip in (1, 2, 3, 4):
        kernel = torch.from_numpy(strip_kernel(conv.weight.detach().numpy(), strip))
        assert kernel.shape == (5 * strip, 3 * strip, 3, 3)
        with torch.no_grad():
            out = from_strips(torch.nn.functional.conv2d(to_strips(x, strip), kernel,
                                                         padding=(1, 1)), 5)
            assert torch.allclose(out, conv(x), atol=1e-5), strip
    # a strip's channels are its pixels' channels in channels-last order, the same bytes
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    assert torch.equal(to_strips(x, 4).permute(0, 2, 3, 1).reshape(-1), nhwc.reshape(-1))


def test_first_convolution_on_strips_keeps_the_function_and_the_original():
    from edgehemo.export.onnx_export import strip_first_convolution
    from edgehemo.train.registry import create_model

    torch.manual_seed(0)
    for name, size in (("cbam_cnn", 64), ("hemonet_gap", 224)):
        model = create_model(name, input_size=size).eval()
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.uniform_(-1, 1)  # BatchNorm is folded: make it matter
            norm.running_var.uniform_(0.5, 2.0)
        stripped = strip_first_convolution(model, size)
        assert stripped is not model
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == 3  # the original is untouched
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            assert torch.allclose(stripped(x), model(x), atol=1e-5), name
    # an input width that is no multiple of the strip, and a first convolution that is not
    # followed by BatchNorm and ReLU, leave the model as it is
    model = create_model("cbam_cnn", input_size=64).eval()
    assert strip_first_convolution(model, 64, strip=3) is model
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    assert strip_first_convolution(plain, 16) is plain


def test_tflite_graph_exports_strip_gates_that_onnxruntime_agrees_with(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime as ort

    from edgehemo.export.onnx_export import export_onnx
    from edgehemo.train.registry import create_model

    torch.manual_seed(0)
    model = create_model("cbam_cnn").eval()
    path = tmp_path / "cbam_cnn.onnx"
    export_onnx(model, 64, path, graph="tflite")
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    # every gate (maps 32, 16, 8 and 4 wide) runs as two strip convolutions, one per descriptor
    # map, and concatenates nothing; no DepthToSpace, which the Edge TPU compiler lacks
    gates = [node for node in graph.node if node.op_type == "Conv" and any(
        a.name == "kernel_shape" and list(a.ints) == [7, 3] for a in node.attribute)]
    assert len(gates) == 8
    assert "Concat" not in ops and "DepthToSpace" not in ops and "ConvTranspose" not in ops
    # the first convolution takes the image on strips of 2 pixels (6 channels), BatchNorm folded
    first = next(node for node in graph.node if node.op_type == "Conv")
    weights = {init.name: init for init in graph.initializer}
    assert list(weights[first.input[1]].dims) == [64, 6, 3, 3]
    assert ops.index("Reshape") < ops.index("Conv") and "BatchNormalization" not in ops
    x = torch.randn(1, 3, 64, 64)  # the TFLite graph has a static batch of 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.allclose(logits, model(x).numpy(), atol=1e-4)


def test_int8_tuned_graph_gives_the_same_function():
    from edgehemo.export.onnx_export import pad_first_convolution
    from edgehemo.train.blocks import attention_graph
    from edgehemo.train.registry import create_model

    torch.manual_seed(0)
    for name in ("cbam_cnn", "sa_cnn", "se_cnn"):
        model = create_model(name).eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            eager = model(x)
            with attention_graph("ort-int8"):
                tuned = pad_first_convolution(model, 64)(x)
        assert torch.allclose(eager, tuned, atol=1e-5), name


def test_padding_the_first_convolution_keeps_the_function_and_the_original():
    from edgehemo.export.onnx_export import pad_first_convolution
    from edgehemo.train.registry import create_model

    model = create_model("cbam_cnn").eval()
    first = model.features[0][0][0]
    padded = pad_first_convolution(model, 64)
    assert padded is not model and first.in_channels == 3  # the original is untouched
    inner = next(m for m in padded.modules() if isinstance(m, torch.nn.Conv2d))
    assert inner.in_channels == 4 and float(inner.weight.detach()[:, 3].abs().sum()) == 0.0
    # A model whose first layer is not the first convolution is left as it is.
    class Shifted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x.flip(1))

    shifted = Shifted().eval()
    assert pad_first_convolution(shifted, 16) is shifted
