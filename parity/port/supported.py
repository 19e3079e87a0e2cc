"""What the port translates, listed from the rule tables themselves (so the list cannot go stale)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Supported:
    modules: tuple[str, ...]
    functions: tuple[str, ...]
    methods: tuple[str, ...]

    def __str__(self) -> str:
        return "\n".join([f"modules:   {', '.join(self.modules)}", f"functions: {', '.join(self.functions)}",
                          f"methods:   {', '.join('Tensor.' + m for m in self.methods)}"])


def supported() -> Supported:
    from parity.port.function_rules import FUNCTION_RULES, METHOD_RULES
    from parity.port.module_rules import module_rules

    def fname(f) -> str:
        mod, name = getattr(f, "__module__", "") or "", getattr(f, "__name__", str(f))
        prefix = ("F." if mod.startswith(("torch.nn.functional", "torch._C._nn")) else
                  "operator." if mod in ("_operator", "operator") else "" if mod == "builtins" else "torch.")
        return prefix + name

    return Supported(tuple(f"nn.{c.__name__}" for c in module_rules()),
                     tuple(sorted({fname(f) for f in FUNCTION_RULES})), tuple(sorted(METHOD_RULES)))
