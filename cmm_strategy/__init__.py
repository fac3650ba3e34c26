"""The CMM runtime inside NautilusTrader: features, students, Hajek-MoE, quoting (numpy only on the hot path)."""
