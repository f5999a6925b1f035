// Structured JSON-lines logging: one object per line with level, time, msg and fields.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose every line carries these fields too. */
  child(fields: LogFields): Logger;
  /** Cheap check for hot paths, so disabled levels cost no object allocation. */
  enabled(level: LogLevel): boolean;
  /** Changes the threshold of this logger and of every logger made from it with child() (log.level edited live). */
  setLevel(level: LogLevel): void;
}

export type LogSink = (line: string) => void;

const stderrSink: LogSink = (line) => {
  process.stderr.write(line + '\n');
};

function serialize(value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out['code'] = code;
    if (value.cause !== undefined) out['cause'] = serialize(value.cause);
    return out;
  }
  return value;
}

export function createLogger(options: { level?: LogLevel; sink?: LogSink; fields?: LogFields } = {}): Logger {
  return makeLogger({ rank: LEVEL_RANK[options.level ?? 'info'] }, options.sink ?? stderrSink, options.fields ?? {});
}

/** `threshold` is shared by a logger and its children, so setLevel on any of them changes them all. */
function makeLogger(threshold: { rank: number }, sink: LogSink, base: LogFields): Logger {
  const write = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVEL_RANK[level] < threshold.rank) return;
    const record: Record<string, unknown> = { level, time: new Date().toISOString(), msg, ...base };
    if (fields !== undefined) {
      for (const key of Object.keys(fields)) record[key] = serialize(fields[key]);
    }
    sink(JSON.stringify(record));
  };

  return {
    debug: (msg, fields) => write('debug', msg, fields),
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
    child: (fields) => makeLogger(threshold, sink, { ...base, ...fields }),
    enabled: (level) => LEVEL_RANK[level] >= threshold.rank,
    setLevel: (level) => {
      threshold.rank = LEVEL_RANK[level];
    },
  };
}

export const silentLogger: Logger = createLogger({ level: 'silent' });

/** Collects lines in memory: for tests that assert on what was logged. */
export function memoryLogger(level: LogLevel = 'debug'): Logger & { lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level, sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return Object.assign(logger, { lines });
}
