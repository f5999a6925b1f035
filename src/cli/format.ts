// Terminal output of the client commands: aligned tables and colour that appears only on a TTY without NO_COLOR.

import type { Writable } from 'node:stream';
import { hashOnText } from '../config/schema.js';
import type { PoolStatusView } from '../control/types.js';

/** A pool's strategy as status lines show it: with the key it hashes on and its sticky cookie, when it has them. */
export function strategyText(pool: PoolStatusView): string {
  let text = pool.strategy;
  if (pool.hashOn !== undefined) text += ` on ${hashOnText(pool.hashOn)}`;
  if (pool.stickyCookie !== undefined) text += `, sticky cookie ${pool.stickyCookie}`;
  return text;
}

export type Colour = 'green' | 'red' | 'yellow' | 'blue' | 'dim' | 'bold';

const ANSI: Record<Colour, [number, number]> = {
  green: [32, 39],
  red: [31, 39],
  yellow: [33, 39],
  blue: [34, 39],
  dim: [2, 22],
  bold: [1, 22],
};

/** Colour only for a person at a terminal: never in pipes or files, and never when NO_COLOR is set (no-color.org). */
export function wantsColour(out: Writable, env: NodeJS.ProcessEnv = process.env): boolean {
  const noColor = env['NO_COLOR'];
  if (noColor !== undefined && noColor !== '') return false;
  return (out as Writable & { isTTY?: boolean }).isTTY === true;
}

export function paint(text: string, colour: Colour | undefined, enabled: boolean): string {
  if (!enabled || colour === undefined) return text;
  const [open, close] = ANSI[colour];
  return `\u001b[${open}m${text}\u001b[${close}m`;
}

export type Cell = string | { readonly text: string; readonly colour?: Colour };

export interface Column {
  readonly header: string;
  readonly align?: 'left' | 'right';
}

function cellText(cell: Cell): string {
  return typeof cell === 'string' ? cell : cell.text;
}

/** Columns padded to their widest cell (measured before colouring, so escapes never skew alignment). */
export function table(columns: readonly Column[], rows: readonly (readonly Cell[])[], colour: boolean): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => cellText(r[i] ?? '').length)));
  const line = (cells: readonly Cell[], isHeader: boolean): string =>
    columns
      .map((column, i) => {
        const cell = cells[i] ?? '';
        const text = cellText(cell);
        const width = widths[i]!;
        const last = i === columns.length - 1;
        const padded = column.align === 'right' ? text.padStart(width) : last ? text : text.padEnd(width);
        const hue = isHeader ? 'dim' : typeof cell === 'string' ? undefined : cell.colour;
        return paint(padded, hue, colour);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header), true), ...rows.map((r) => line(r, false))].join('\n') + '\n';
}

const STATE_COLOURS: Record<string, Colour> = { up: 'green', down: 'red', ejected: 'yellow', draining: 'blue' };

export function stateCell(state: string): Cell {
  const colour = STATE_COLOURS[state];
  return colour === undefined ? state : { text: state, colour };
}
