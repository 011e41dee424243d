"""`python -m analyses dictionaries train|list|eval`: the dictionary verbs of the CLI."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("analyses")


def add_parser(verbs) -> None:
    parser = verbs.add_parser("dictionaries", help="sparse dictionaries (SAEs, transcoders): train, list, eval")
    actions = parser.add_subparsers(dest="action", required=True)
    train = actions.add_parser("train", help="train (or resume) dictionaries; progress on stderr, "
                                             "the trained directories as JSON on stdout")
    train.add_argument("--model", default="default")
    train.add_argument("--site", action="append", required=True,
                       help="blocks.L.hook_resid_post, blocks.L.attn.hook_z, blocks.L.mlp (a transcoder), "
                            "or all (every layer's three); repeatable")
    train.add_argument("--latents", type=int, default=1024)
    train.add_argument("--k", type=int, default=16)
    train.add_argument("--tokens", type=int, default=1_000_000, help="training tokens per dictionary")
    train.add_argument("--distinct-tokens", type=int,
                       help="draw them from this many distinct tokens, cycled in epochs (default: --tokens, "
                            "one pass); the activation cache holds this many")
    train.add_argument("--transcoder-skip", action="store_true",
                       help="give transcoders (blocks.L.mlp) a linear skip from MLP input to output")
    train.add_argument("--kl-finetune-tokens", type=int, default=0,
                       help="after the MSE training, fine-tune on this many tokens with KL(clean logits || "
                            "logits with the dictionary spliced in) added to the loss (0: none)")
    train.add_argument("--kl-coeff", type=float, default=1.0, help="the KL term's weight against FVU")
    train.add_argument("--kl-decoder-only", action="store_true",
                       help="the KL fine-tune moves only the decoder: the latents that fire stay the MSE ones")
    train.add_argument("--matryoshka", type=int, action="append", default=[], metavar="M",
                       help="train as a Matryoshka SAE: latents 0..M-1 alone must also reconstruct "
                            "(repeat for several nested sizes); the first latents then learn general "
                            "features rather than splitting them")
    train.add_argument("--matryoshka-release-tokens", type=int, default=0,
                       help="then train this many tokens more with the prefix terms dropped, at half the "
                            "learning rate: the prefixes' general latents stay and the explained variance "
                            "they cost comes back (needs --matryoshka; 0: none)")
    train.add_argument("--mp-finetune-tokens", type=int, default=0,
                       help="after the MSE training (and any KL fine-tune), train the decoder through "
                            "matching pursuit on this many tokens; the SAE then encodes by pursuit (MP-SAE; "
                            "autoencoders only, 0: none)")
    train.add_argument("--mp-kl-finetune-tokens", type=int, default=0,
                       help="then KL fine-tune the decoder through the pursuit on this many tokens, the KL "
                            "term weighted --kl-coeff (needs --mp-finetune-tokens; 0: none)")
    train.add_argument("--eval-tokens", type=int, default=100_000)
    train.add_argument("--ce-tokens", type=int, default=100_000,
                       help="of the eval tokens, those spliced back for cross-entropy and KL")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1,
                       help="torch threads for this run (default 1: the right number where several runs "
                            "share the cores; a machine running only this one: its cores)")
    train.add_argument("--ctx", type=int, default=256, help="document length (capped at the model's)")
    train.add_argument("--out", type=Path, help="folder of one directory per site "
                                                "(default data/dictionaries/<model>)")
    train.add_argument("--cache", type=Path, help="activation cache (default $ANALYSES_ACTIVATIONS or "
                                                  "~/.cache/analyses-activations)")
    actions.add_parser("list", help="the dictionaries under data/dictionaries, as JSON")
    ev = actions.add_parser("eval", help="measure a dictionary directory on held-out text and "
                                         "write its metrics.json")
    ev.add_argument("dir", type=Path)
    ev.add_argument("--model", help="default: the model named in its cfg.json")
    ev.add_argument("--eval-tokens", type=int, default=100_000)
    ev.add_argument("--ce-tokens", type=int, default=100_000)
    ev.add_argument("--cache", type=Path)


def run(args) -> dict:
    from analyses.core.errors import UserError

    if args.action == "list":
        from analyses.dictionaries import registry

        return {"dictionaries": registry.listing()}
    if args.action == "train":
        from analyses.dictionaries.pipeline import Plan, train

        if args.latents <= 0 or not 0 < args.k <= args.latents:
            raise UserError(f"--k must be in 1..--latents, got k={args.k}, latents={args.latents}")
        pool = 1 if args.distinct_tokens is None else args.distinct_tokens
        if min(args.tokens, args.eval_tokens, pool) <= 0:
            raise UserError("--tokens, --distinct-tokens and --eval-tokens must be positive")
        if args.threads < 1:
            raise UserError(f"--threads must be 1 or more, got {args.threads}")
        if args.kl_finetune_tokens < 0 or args.kl_coeff <= 0:
            raise UserError(f"--kl-finetune-tokens must be 0 or more and --kl-coeff positive, got "
                            f"{args.kl_finetune_tokens} and {args.kl_coeff}")
        prefixes = sorted(set(args.matryoshka))
        if any(not 0 < m < args.latents for m in prefixes):
            raise UserError(f"--matryoshka sizes must be in 1..--latents - 1 ({args.latents - 1}), got "
                            f"{', '.join(map(str, args.matryoshka))}")
        if args.matryoshka_release_tokens < 0:
            raise UserError(f"--matryoshka-release-tokens must be 0 or more, got {args.matryoshka_release_tokens}")
        if args.matryoshka_release_tokens and not prefixes:
            raise UserError("--matryoshka-release-tokens drops the Matryoshka prefix terms: it needs --matryoshka")
        from analyses.dictionaries.sites import parse

        if args.mp_finetune_tokens < 0 or args.mp_kl_finetune_tokens < 0:
            raise UserError(f"--mp-finetune-tokens and --mp-kl-finetune-tokens must be 0 or more, got "
                            f"{args.mp_finetune_tokens} and {args.mp_kl_finetune_tokens}")
        if args.mp_kl_finetune_tokens and not args.mp_finetune_tokens:
            raise UserError("--mp-kl-finetune-tokens fine-tunes through the pursuit: it needs --mp-finetune-tokens")
        for name in args.site:  # a bad name fails here, before the model loads
            if name != "all" and parse(name).transcode and args.mp_finetune_tokens:
                raise UserError(f"--mp-finetune-tokens: {name} is a transcoder site; matching pursuit "
                                "reconstructs its own input (residual and attention-output SAEs only)")
        plan = Plan(model=args.model, sites=tuple(args.site), num_latents=args.latents, k=args.k,
                    transcoder_skip=args.transcoder_skip, kl_finetune_tokens=args.kl_finetune_tokens,
                    kl_coeff=args.kl_coeff, kl_decoder_only=args.kl_decoder_only,
                    matryoshka_prefixes=tuple(prefixes), matryoshka_release_tokens=args.matryoshka_release_tokens,
                    mp_finetune_tokens=args.mp_finetune_tokens, mp_kl_finetune_tokens=args.mp_kl_finetune_tokens,
                    tokens=args.tokens, distinct_tokens=args.distinct_tokens,
                    eval_tokens=args.eval_tokens, ce_tokens=args.ce_tokens,
                    seed=args.seed, n_ctx=args.ctx, out=args.out, cache=args.cache, threads=args.threads)
        return {"dictionaries": [str(p) for p in train(plan, progress=lambda fraction, message: log.info(message))]}
    from analyses.dictionaries.pipeline import evaluate_folder

    return {"path": str(args.dir), "metrics": evaluate_folder(args.dir, args.model, args.eval_tokens,
                                                                args.ce_tokens, args.cache)}
