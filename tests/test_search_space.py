"""Search space: primitives, genotypes (validation, JSON), the super-network and its derived genotype."""

import pytest
import timm
import torch

import wsr_bench.models  # noqa: F401
from wsr_bench.search_space import OPS, PRIMITIVES, Genotype, GenotypeError, known_genotypes, load_genotype
from wsr_bench.search_space.ops import make_op
from wsr_bench.search_space.supernet import FixedArchitecture, MixedOp, SuperNet, num_edges


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
def test_ops_keep_channels_and_stride(name, stride):
    out = OPS[name](6, stride, True)(torch.rand(2, 6, 8, 8))
    assert out.shape == (2, 6, 8 // stride, 8 // stride)


def test_unknown_primitive():
    with pytest.raises(ValueError, match="unknown primitive 'conv_9x9'"):
        make_op("conv_9x9", 4, 1)


def test_known_genotypes_are_shipped_with_sources():
    known = known_genotypes()
    assert {"wsrnet_basic", "wsrnet_plus", "wsrnet_m", "wsrnet_n", "racl", "advrush", "darts_v2",
            "pc_darts"} <= set(known)
    assert all(k.source for k in known.values())


@pytest.mark.parametrize("name", sorted(known_genotypes()))
def test_genotype_json_round_trip(name):
    geno = known_genotypes()[name].genotype
    assert Genotype.from_json(geno.to_json()) == geno
    assert hash(geno) == hash(Genotype.from_dict(geno.to_dict()))


def test_genotype_edge_to_missing_node():
    d = known_genotypes()["darts_v2"].genotype.to_dict()
    d["normal"][2] = ["sep_conv_3x3", 7]
    with pytest.raises(GenotypeError, match="from node 7, which does not exist"):
        Genotype.from_dict(d)


def test_genotype_unknown_op_and_missing_key():
    d = known_genotypes()["darts_v2"].genotype.to_dict()
    d["reduce"][0] = ["conv_7x7", 0]
    with pytest.raises(GenotypeError, match="unknown primitive 'conv_7x7'"):
        Genotype.from_dict(d)
    with pytest.raises(GenotypeError, match="missing key 'reduce_concat'"):
        Genotype.from_dict({"normal": [], "normal_concat": [], "reduce": []})


def test_load_genotype_unknown_name():
    with pytest.raises(GenotypeError, match="neither a known genotype"):
        load_genotype("not_a_genotype")


def _tiny_supernet():
    return SuperNet(C=4, num_classes=10, layers=3)


def test_supernet_shapes_and_arch_parameters():
    net = _tiny_supernet()
    assert net.arch_weights.shape == (2, num_edges(4), len(PRIMITIVES)) == (2, 14, 8)
    assert net.arch_parameters() == [net.arch_weights]
    assert all(p is not net.arch_weights for p in net.weights())
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 10)


def test_sampled_subnet_runs_only_the_chosen_ops():
    net = _tiny_supernet()
    H = net.sample(generator=torch.Generator().manual_seed(3))
    assert torch.equal(H.sum(-1), torch.ones(2, 14))
    calls = []
    for cell_i, cell in enumerate(net.cells):
        for e, mixed in enumerate(cell.edges):
            assert isinstance(mixed, MixedOp)
            for k, op in enumerate(mixed.ops):
                op.register_forward_hook(lambda m, i, o, key=(cell_i, e, k): calls.append(key))
    net(torch.rand(2, 3, 16, 16), H)
    expected = {(ci, e, int(H[1 if cell.reduction else 0, e].argmax()))
                for ci, cell in enumerate(net.cells) for e in range(14)}
    assert set(calls) == expected and len(calls) == len(expected)


def test_soft_h_runs_every_op_and_gives_arch_gradients():
    net = _tiny_supernet()
    H = net.gumbel_softmax(tau=1.0, generator=torch.Generator().manual_seed(0))
    assert (H > 0).all()
    net(torch.rand(2, 3, 16, 16), H).logsumexp(-1).sum().backward()
    assert net.arch_weights.grad is not None and net.arch_weights.grad.abs().sum() > 0


def test_hard_gumbel_carries_straight_through_gradient():
    net = _tiny_supernet()
    H = net.gumbel_softmax(tau=1.0, hard=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal((H != 0).sum(-1), torch.ones(2, 14, dtype=torch.long))
    net(torch.rand(2, 3, 16, 16), H).sum().backward()
    assert net.arch_weights.grad.abs().sum() > 0


def test_sampling_is_reproducible_with_a_generator():
    net = _tiny_supernet()
    a = net.sample(generator=torch.Generator().manual_seed(5))
    b = net.sample(generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_derived_genotype_is_valid_and_builds_a_network():
    net = _tiny_supernet()
    with torch.no_grad():
        net.arch_weights[:, :, PRIMITIVES.index("none")] = 10.0  # 'none' must never be chosen
        net.arch_weights[0, :, PRIMITIVES.index("sep_conv_3x3")] = 1.0
    geno = net.genotype()
    assert all(op != "none" for op, _ in geno.normal + geno.reduce)
    assert all(op == "sep_conv_3x3" for op, _ in geno.normal)
    model = timm.create_model("wsrnet", genotype=geno, init_channels=4, layers=3)
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 10)


def test_fixed_architecture_view_shares_weights():
    net = _tiny_supernet()
    H = net.sample(generator=torch.Generator().manual_seed(1))
    view = FixedArchitecture(net, H).eval()
    net.eval()
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(view(x), net(x, H))
    assert "H" not in view.state_dict()


def test_supernet_rejects_bad_h_shape():
    with pytest.raises(ValueError, match="H must have shape"):
        _tiny_supernet()(torch.rand(1, 3, 16, 16), torch.ones(2, 3, 8))
