// The order the bench measures in: which target goes first in a round, and which of a target's processes a round measures.

/**
 * The targets in the order round `round` (from 1) measures them: A B C, C B A, A B C ... In a fixed order the first
 * target of every round measured about 5% more CPU than the round's mean (1 MB POST, 19 rounds in three runs,
 * 2026-12-01), and balancer leads most phases' lists.
 */
export function roundOrder(targets, round) {
  return round % 2 === 1 ? targets : [...targets].reverse();
}

/**
 * Which of a target's `count` processes round `round` measures (an index from 0): rounds 1-2 the first, 3-4 the second,
 * and so on round them, so over 2 x count rounds each process is measured once in each of the two orders.
 */
export function instanceForRound(round, count) {
  return Math.floor((round - 1) / 2) % count;
}
