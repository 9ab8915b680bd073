"""The Composer's grammar: PerTok's automaton (`pertok.grammar`) in the composition view,
with ideas ending after `num_bars` bars (EOS instead of another Bar)."""
from __future__ import annotations

from pertok.grammar import Grammar, GrammarState


def idea_grammar(tokenizer, num_bars: int) -> Grammar:
    """The automaton that ideas of at most `num_bars` bars are sampled under."""
    return Grammar(tokenizer, "composition", max_bars=num_bars)


__all__ = ["Grammar", "GrammarState", "idea_grammar"]
