"""`voicenode boards`: list, check and generate the board definitions in boards/.

voicenode boards                         the table: name, microphone, codec, supported
voicenode boards --check                 validate every definition (exit 1 on an error)
voicenode boards --generate [NAME ...]   write boards/<NAME>/board.py from board.json
voicenode boards --wiring NAME -o F.svg  draw the wiring of a board and its microphone
"""

from pathlib import Path


def add_arguments(parser):
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="validate every board definition")
    group.add_argument(
        "--generate",
        nargs="*",
        metavar="NAME",
        help="write board.py from board.json (all boards when no NAME is given)",
    )
    group.add_argument("--wiring", metavar="NAME", help="draw the wiring of board NAME as SVG")
    parser.add_argument(
        "-o", "--output", type=Path, help="with --wiring: the SVG file (default stdout)"
    )


def run(args) -> int:
    from voicenode_tools import boards
    from voicenode_tools.cli import CommandError

    if args.wiring:
        try:
            svg = boards.wiring_svg(boards.read(args.wiring))
        except boards.BoardError as e:
            raise CommandError(str(e)) from e
        if args.output:
            args.output.write_text(svg)
            print(f"wrote {args.output}")
        else:
            print(svg, end="")
        return 0

    if args.generate is not None:
        try:
            chosen = [boards.read(n) for n in (args.generate or boards.names())]
        except boards.BoardError as e:
            raise CommandError(str(e)) from e
        for b in chosen:
            errors, _ = b.problems()
            if errors:
                raise CommandError(
                    f"board {b.name} is invalid, not generated: " + "; ".join(errors)
                )
            changed = not b.board_py_is_current()
            b.write_board_py()
            print(f"{'wrote    ' if changed else 'unchanged'} boards/{b.name}/board.py")
        return 0

    if args.check:
        failed = 0
        for b in boards.all_boards():
            errors, warnings = b.problems()
            if not errors and not b.board_py_is_current():
                errors = ["board.py is missing or stale: run `voicenode boards --generate`"]
            state = "ok" if not errors else "INVALID"
            extra = "" if b.supported else f" (unsupported: {b.unsupported_reason})"
            print(f"{b.name}: {state}{extra}")
            for e in errors:
                print(f"  error: {e}")
            for w in warnings:
                print(f"  warning: {w}")
            failed += bool(errors)
        if failed:
            raise CommandError(f"{failed} board definition(s) invalid")
        return 0

    rows = [("BOARD", "MICROPHONE", "CODEC", "SUPPORTED")]
    for b in boards.all_boards():
        codec = b.codec["chip"] if b.codec else "-"
        default = " (default)" if b.name == boards.DEFAULT else ""
        sup = "yes" if b.supported else f"no: {b.unsupported_reason}"
        rows.append((b.name + default, b.mic.get("type", "?"), codec, sup))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    return 0
