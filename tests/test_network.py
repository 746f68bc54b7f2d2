"""The lead's Network: forward vs torch float64, save/load, corruption, bad inputs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import itertools

from nnmiplib import Network


def _random_net(rng, sizes=(784, 30, 20, 10), name="rand"):
    ws = [rng.normal(scale=1 / np.sqrt(a), size=(b, a)) for a, b in itertools.pairwise(sizes)]
    bs = [rng.normal(scale=0.1, size=b) for b in sizes[1:]]
    return Network(ws, bs, name=name)


def test_forward_matches_torch_float64():
    rng = np.random.default_rng(0)
    net = _random_net(rng)
    x = rng.uniform(0, 1, size=(64, 784))
    model = net.to_torch()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    ours = net.forward(x)
    diff = float(np.max(np.abs(ours - ref)))
    print(f"max |forward - torch float64| = {diff:.3e}")
    assert diff < 1e-12
    # preactivations: last = logits; hidden ones match torch's intermediate Linear outputs
    pre = net.preactivations(x)
    assert len(pre) == net.depth + 1
    np.testing.assert_array_equal(pre[-1], ours)
    with torch.no_grad():
        h = torch.from_numpy(x)
        for l, m in enumerate(model):
            h = m(h)
            if isinstance(m, torch.nn.Linear):
                assert np.max(np.abs(pre[l // 2] - h.numpy())) < 1e-12
    # single vector and predict/accuracy agree with the batch
    np.testing.assert_allclose(net.forward(x[3]), ours[3], rtol=0, atol=1e-12)
    assert net.predict(x[3]) == np.argmax(ours[3])
    assert net.accuracy(x, ref.argmax(1)) == 1.0


def test_from_torch_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    net = Network.from_torch(model)
    assert net.layer_sizes == (12, 5, 3) and net.arch == "5x1"
    x = np.random.default_rng(1).uniform(size=(9, 12)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).double().numpy()
    diff = float(np.max(np.abs(net.forward(x) - ref)))
    print(f"max |forward - torch float32 model| = {diff:.3e}")
    assert diff < 1e-5
    assert Network.from_torch(net.to_torch()) == net


def test_from_torch_rejects_other_layers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="module 1 is Sigmoid"):
        Network.from_torch(model)


def test_save_load_round_trip(tmp_path):
    net = _random_net(np.random.default_rng(2), sizes=(6, 4, 3), name="tiny")
    path = net.save(tmp_path / "tiny.npz")
    back = Network.load(path)
    assert back == net and back.name == "tiny"
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        np.testing.assert_array_equal(a, b)
        assert b.dtype == np.float64 and not b.flags.writeable
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupted_file(tmp_path):
    net = _random_net(np.random.default_rng(3), sizes=(6, 4, 3))
    path = net.save(tmp_path / "n.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="not a readable nnmiplib network file"):
        Network.load(path)
    # flipped parameter bytes with intact zip structure: digest check
    import io
    import json

    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["w0"] = arrays["w0"] + 1e-9
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="digest"):
        Network.load(path)
    assert json.loads(bytes(arrays["meta"]).decode())["digest"] == net.digest()
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "weights, biases, match",
    [
        ([np.ones((3, 4)), np.full((2, 3), np.nan)], [np.zeros(3), np.zeros(2)], "layer 1: weight contains NaN"),
        ([np.ones((3, 4)), np.ones((2, 3))], [np.zeros(3), np.array([0.0, np.inf])], "layer 1: bias contains"),
        ([np.ones((3, 4)), np.ones((2, 5))], [np.zeros(3), np.zeros(2)], "layer 1: weight takes 5 inputs"),
        ([np.ones((3, 4))], [np.zeros(4)], "layer 0: bias shape"),
        ([np.ones(4)], [np.zeros(1)], "layer 0: weight must be a 2-D"),
        ([np.ones((3, 4))], [np.zeros(3), np.zeros(3)], "1 weight matrices but 2 bias"),
    ],
)
def test_bad_parameters_name_the_layer(weights, biases, match):
    with pytest.raises(ValueError, match=match):
        Network(weights, biases)


def test_bad_input_shape_and_immutability():
    net = _random_net(np.random.default_rng(4), sizes=(6, 4, 3))
    with pytest.raises(ValueError, match="this network takes 6 inputs"):
        net.forward(np.zeros(5))
    with pytest.raises(ValueError):
        net.weights[0][0, 0] = 1.0
