// Rate-limited logging of refused peer traffic: a flood of bad frames costs a line per interval and reason, not per frame.

import type { Clock } from '../../clock.js';
import type { Logger } from '../../log.js';
import type { PeerRejectReason } from './peer-connection.js';

/** Rate-limits rejection logs per reason so a flood of bad frames costs a line per interval, not per frame. */
export class RejectLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly intervalMs: number,
  ) {}

  note(reason: PeerRejectReason, detail: string, context: Record<string, unknown>): void {
    this.warn(reason, 'rejected peer traffic', { reason, detail, ...context });
  }

  /** Logs `msg` unless the same key was logged within the interval (then counts it for the next line). */
  warn(key: string, msg: string, fields: Record<string, unknown>): void {
    const now = this.clock.now();
    const previous = this.last.get(key);
    if (previous !== undefined && now - previous.at < this.intervalMs) {
      previous.suppressed++;
      return;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger.warn(msg, { ...fields, suppressedSinceLast: previous?.suppressed ?? 0 });
  }
}
