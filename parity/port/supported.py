"""What the port translates, listed from the rule tables themselves (so the list cannot go stale)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Supported:
    modules: tuple[str, ...]
    functions: tuple[str, ...]
    methods: tuple[str, ...]
    aten: tuple[int, int, tuple[str, ...]] = (0, 0, ())
    """Core ATen overloads with a rule, in total, and the missing ones: the path of modules with no rule."""

    def __str__(self) -> str:
        lines = [f"modules:   {', '.join(self.modules)}", f"functions: {', '.join(self.functions)}",
                 f"methods:   {', '.join('Tensor.' + m for m in self.methods)}"]
        covered, total, missing = self.aten
        if total:
            lines.append(f"other modules: lowered to Core ATen, {covered} of its {total} overloads have a rule "
                         f"({100 * covered / total:.0f}%); missing: {', '.join(missing)}")
        return "\n".join(lines)


def supported() -> Supported:
    from parity.port.function_rules import FUNCTION_RULES, METHOD_RULES
    from parity.port.module_rules import module_rules

    def fname(f) -> str:
        mod, name = getattr(f, "__module__", "") or "", getattr(f, "__name__", str(f))
        prefix = ("F." if mod.startswith(("torch.nn.functional", "torch._C._nn")) else
                  "operator." if mod in ("_operator", "operator") else "" if mod == "builtins" else "torch.")
        return prefix + name

    from parity.port.aten import coverage

    covered, total, missing = coverage()
    return Supported(tuple(f"nn.{c.__name__}" for c in module_rules()),
                     tuple(sorted({fname(f) for f in FUNCTION_RULES})), tuple(sorted(METHOD_RULES)),
                     (covered, total, tuple(missing)))
