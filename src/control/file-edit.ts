// The front half of an edit of balancer.yaml, shared by the standalone store and the cluster: validate the whole file, log each problem as FILE:LINE:COL, and tell an edit from a file that holds none.

import type { ReplicatedConfig } from '../config/schema.js';
import { hasReplicatedSections } from '../config/safety.js';
import { formatProblem, validateConfigText, type Problem } from '../config/validate.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/types.js';

/**
 * `invalid`: the file does not validate (every problem was logged, the reload counted as a failure);
 * `ignored`: it is empty or has neither routes nor pools (being written, or damaged), so it is no edit of them;
 * `edit`: the routes and pools it holds, for the store to compare, check and apply or propose.
 */
export type FileEditReading =
  | { readonly kind: 'invalid'; readonly problems: readonly Problem[] }
  | { readonly kind: 'ignored' }
  | { readonly kind: 'edit'; readonly config: ReplicatedConfig };

export interface FileEditContext {
  readonly file: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The version this node serves, logged beside an ignored file. */
  readonly servingVersion: number;
  /** What the store does instead of the edit, ending the log lines: 'nothing was proposed', say. */
  readonly instead: string;
}

/**
 * Reads the text of a config file as an edit of routes and pools. The whole file is validated, local sections
 * too (a restart must load it), but only routes and pools are returned: the rest changes only on a restart.
 */
export function readFileEdit(text: string, context: FileEditContext): FileEditReading {
  const { file, logger, metrics } = context;
  const validated = validateConfigText(text, file);
  if (!validated.ok) {
    metrics.configReload('failure');
    // One line per problem, in the FILE:LINE:COL form editors and `balancer validate` use, then the summary.
    for (const problem of validated.problems) logger.error(formatProblem(file, problem), { file });
    logger.error(`config edit rejected: the file is invalid; ${context.instead}`, { file, problems: validated.problems.length });
    return { kind: 'invalid', problems: validated.problems };
  }
  if (!hasReplicatedSections(text)) {
    logger.warn(`config file ignored: it is empty or has neither routes nor pools, so it is no edit of them; ${context.instead}`, {
      file,
      servingVersion: context.servingVersion,
      hint: 'this node keeps serving its config; restore the file (GET /api/v1/config shows routes and pools)',
    });
    return { kind: 'ignored' };
  }
  return { kind: 'edit', config: { routes: validated.config.routes, pools: validated.config.pools } };
}
