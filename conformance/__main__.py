"""python -m conformance: check backends against the float64 reference.

    python -m conformance                               every installed backend, both dtypes, every check
    python -m conformance --backend torch jax --profile thorough --json out.json
    python -m conformance --backend torch --check d_grads --dtype float32 --seed 1234   (a reproduction)
    python -m conformance --backend mypkg.gan:MyBackend  a class that is not registered
    python -m conformance mutants                        the oracle's self-test: catch rate over broken backends
"""

import argparse
import random
import sys
import time

from backends import available

from . import discover, mutants, report, runner
from .checks import CHECKS
from .runner import PROFILES


def _parser():
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["run", "mutants"], default="run")
    p.add_argument("--backend", nargs="+", metavar="NAME",
                   help=f"registered names ({', '.join(available())}) or module:Class; default: all installed")
    p.add_argument("--check", nargs="+", choices=list(CHECKS), metavar="CHECK",
                   help=f"checks to run (default all): {', '.join(CHECKS)}")
    p.add_argument("--dtype", nargs="+", choices=["float64", "float32"], default=["float64", "float32"])
    p.add_argument("--profile", choices=list(PROFILES), default="dev",
                   help="examples per check and dtype: " + ", ".join(f"{k} {v}" for k, v in PROFILES.items()))
    p.add_argument("--examples", type=int, help="override the profile's number of examples")
    p.add_argument("--seed", type=int, help="Hypothesis seed (default: 0 for the ci profile, else random)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--no-shrink", action="store_true", help="report the first failing case, unshrunk (faster)")
    p.add_argument("--mutants", action="store_true", help="same as the `mutants` command")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.examples is not None and args.examples <= 0:
        _parser().error("--examples must be positive")
    n = args.examples or PROFILES[args.profile]
    seed = args.seed if args.seed is not None else (0 if args.profile == "ci" else random.randrange(2**31))
    checks = args.check or list(CHECKS)
    if args.command == "mutants" or args.mutants:
        return _mutants(args, n, seed, checks)
    classes, skipped = discover.backends(args.backend)
    for name, reason in skipped.items():
        print(f"skipping backend {name}: {reason}", file=sys.stderr)
    results, start = [], time.perf_counter()
    for name, cls in classes.items():
        for dtype in args.dtype:
            for check in checks:
                r = runner.run_check(cls, check, dtype, max_examples=n, seed=seed, backend_name=name,
                                     profile=None if args.examples else args.profile, shrink=not args.no_shrink)
                results.append(r)
                print(f"  {name} {dtype} {check}: {r.status} ({r.examples} examples, {r.seconds:.1f}s)",
                      file=sys.stderr, flush=True)
    total = time.perf_counter() - start
    print(report.table(results, skipped))
    print(report.failures(results))
    failed = sum(r.status in ("fail", "error") for r in results)
    skips = sum(r.status == "skip" for r in results)
    print(f"\n{len(results) - failed - skips}/{len(results)} passed"
          + (f", {skips} skipped (not implemented by the backend)" if skips else "")
          + f"; profile {args.profile} ({n} examples per check), seed {seed}; {total:.1f}s in all")
    if args.json:
        report.write_json(args.json, results, skipped, {"seed": seed, "profile": args.profile, "seconds": total})
    return 1 if failed or not results else 0


def _mutants(args, n, seed, checks) -> int:
    """Every mutant against the checks (float64), stopping at the first check that catches it."""
    control = runner.run_check(mutants.Hooked, "step", "float64", max_examples=n, seed=seed, shrink=False)
    rows, caught = [], 0
    start = time.perf_counter()
    for cls in mutants.MUTANTS:
        by = None
        for check in checks:
            r = runner.run_check(cls, check, "float64", max_examples=n, seed=seed, shrink=False,
                                 backend_name=cls.__name__)
            if r.status == "fail":
                by = check
                break
        caught += by is not None
        rows.append((cls.__name__, by, cls.bug))
        print(f"{cls.__name__:<34} {'CAUGHT by ' + by if by else 'MISSED':<24} {cls.bug}", flush=True)
    rate = caught / len(mutants.MUTANTS)
    print(f"\ncatch rate: {caught}/{len(mutants.MUTANTS)} = {rate:.0%} ({time.perf_counter() - start:.1f}s; "
          f"control passes 'step': {control.status == 'pass'})")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump({"mutants": [{"name": a, "caught_by": b, "bug": c} for a, b, c in rows], "catch_rate": rate},
                      f, indent=1)
    return 0 if caught == len(mutants.MUTANTS) and control.status == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
