"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models Trained
on Code", section 2.1.

With n samples of which c pass, pass@k = E[1 - C(n-c, k) / C(n, k)]: the probability that at least
one of k samples drawn without replacement from the n passes. The binomial ratio is computed as a
running product, 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.
"""

from __future__ import annotations


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples with c correct (requires 1 <= k <= n)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least k={k} samples per problem, got n={n}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    failing_subsets = 1.0
    for i in range(n - c + 1, n + 1):
        failing_subsets *= 1.0 - k / i
    return 1.0 - failing_subsets
