"""``bptt gradcheck``: hand-derived BPTT against float64 finite differences."""

from __future__ import annotations

from ..gradcheck import check_network, random_lengths, random_problem
from ..layers.gru import GRU_VARIANTS
from ..network import CELLS, Network


def add_parser(sub) -> None:
    p = sub.add_parser("gradcheck", help="check every gradient against float64 central differences",
                       description="Build a small float64 network with random weights and data, compute every "
                                   "gradient by BPTT and by central differences, print the worst relative "
                                   "error per parameter, and exit 1 if any exceeds --tol.")
    p.add_argument("--cell", choices=CELLS, default="rnn", help="recurrent cell")
    p.add_argument("--layers", type=int, default=2, help="number of stacked layers")
    p.add_argument("--input", type=int, default=4, help="input size (vocabulary size with --ids)")
    p.add_argument("--hidden", type=int, default=5, help="hidden size")
    p.add_argument("--output", type=int, default=3, help="output size")
    p.add_argument("--seq-len", type=int, default=5, help="time steps T")
    p.add_argument("--batch", type=int, default=3, help="batch size B")
    p.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh", help="rnn cell only")
    p.add_argument("--gru-variant", choices=GRU_VARIANTS, default="torch",
                   help="gru cell: reset after the recurrent matmul (torch) or before it (cho, Cho et al. 2014)")
    p.add_argument("--forget-bias", type=float, default=1.0, help="lstm cell: added to the forget-gate bias at init")
    p.add_argument("--bidirectional", action="store_true", help="a reverse-direction layer beside each layer")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout between stacked layers; checked under one fixed random mask")
    p.add_argument("--no-bias", action="store_true", help="layers and readout without biases")
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy",
                   help="cross_entropy: softmax outputs and token targets; mse: identity outputs, float targets")
    p.add_argument("--ids", action="store_true", help="integer token ids as inputs instead of float features")
    p.add_argument("--mask", action="store_true", help="a random 0/1 mask over (T, B)")
    p.add_argument("--eps", type=float, default=1e-6, help="finite-difference step")
    p.add_argument("--tol", type=float, default=1e-6, help="largest relative error accepted")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the data and the random upstream gradient")
    # Variable-length sequences, embeddings and readout modes (README "Sequences").
    p.add_argument("--lengths", action="store_true",
                   help="random sequence lengths in [1, T] (1 and T among them): packed sequences")
    p.add_argument("--embedding", type=int, default=None, metavar="E",
                   help="an embedding (vocabulary x E) before layer 0; implies --ids")
    p.add_argument("--tie-weights", action="store_true", help="readout V shares the embedding (needs --embedding)")
    p.add_argument("--readout", choices=("all", "last", "mean"), default="all",
                   help="one output per step (all), or per sequence: at its last step (last) or the mean (mean)")
    p.add_argument("--layer-norm", action="store_true", help="lstm cell: layer-normalised (Ba et al. 2016)")
    p.add_argument("--proj-size", type=int, default=None, help="lstm cell: project h to this size (torch's proj_size)")
    p.add_argument("--weight-dropout", type=float, default=0.0,
                   help="DropConnect on W (checked under the drawn mask)")
    p.add_argument("--recurrent-dropout", type=float, default=0.0,
                   help="variational dropout on h_(t-1) before W (checked under the drawn masks)")
    p.add_argument("--zoneout", type=float, default=0.0, help="zoneout rate (checked under the drawn masks)")
    p.add_argument("--eval", action="store_true",
                   help="check in evaluation mode (no dropout masks; zoneout as its expectation)")
    p.set_defaults(run=run)


def network_from_args(args) -> Network:
    return Network(args.input, args.hidden, args.output, num_layers=args.layers, cell=args.cell,
                   nonlinearity=args.nonlinearity, bias=not args.no_bias, seed=args.seed,
                   dtype="float64", loss=args.loss, bidirectional=args.bidirectional, dropout=args.dropout,
                   gru_variant=args.gru_variant, forget_bias=args.forget_bias,
                   embedding_size=args.embedding, tie_weights=args.tie_weights, readout=args.readout,
                   layer_norm=args.layer_norm, proj_size=args.proj_size, weight_dropout=args.weight_dropout,
                   recurrent_dropout=args.recurrent_dropout, zoneout=args.zoneout)


def run(args) -> int:
    if not args.eps > 0:
        raise ValueError(f"--eps must be > 0, got {args.eps}")
    if not args.tol > 0:
        raise ValueError(f"--tol must be > 0, got {args.tol}")
    net = network_from_args(args)
    if args.eval:
        net.eval()
    inputs, targets, mask, h0 = random_problem(net, args.seq_len, args.batch, seed=args.seed,
                                               token_ids=args.ids or args.embedding is not None, masked=args.mask)
    lengths = random_lengths(args.batch, args.seq_len, seed=args.seed) if args.lengths else None
    errors = check_network(net, inputs, targets, mask, h0, eps=args.eps, seed=args.seed, lengths=lengths)
    width = max(len(name) for name in errors)
    print(f"{'gradient':<{width}}  worst relative error")
    for name, err in errors.items():
        flag = "" if err <= args.tol else "   <-- above tolerance"
        print(f"{name:<{width}}  {err:.3e}{flag}")
    worst = max(errors.values())
    verdict = "PASS" if worst <= args.tol else "FAIL"
    print(f"{verdict}: worst {worst:.3e} (tolerance {args.tol:.1e})")
    return 0 if worst <= args.tol else 1
