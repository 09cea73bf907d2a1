import Table from 'cli-table3'

/**
 * docker/nerdctl table output: Go's text/tabwriter with minwidth 4, tabwidth 8,
 * padding 4, pad char ' ' (nerdctl: tabwriter.NewWriter(w, 4, 8, 4, ' ', 0)).
 * Every row is `cell\tcell\t...\tlast`: the tab-terminated cells are aligned
 * (width = max(minwidth, widest cell + padding), padded with spaces even when
 * empty), the last cell is written as is. The aligned part is laid out by
 * cli-table3 with no borders; the last cell is appended unpadded.
 */

const NO_BORDER = {
  top: '',
  'top-mid': '',
  'top-left': '',
  'top-right': '',
  bottom: '',
  'bottom-mid': '',
  'bottom-left': '',
  'bottom-right': '',
  left: '',
  'left-mid': '',
  mid: '',
  'mid-mid': '',
  right: '',
  'right-mid': '',
  middle: '',
}

export interface TabwriterOptions {
  minWidth?: number
  padding?: number
}

/** Renders rows (header first, if any) the way Go's tabwriter does; one string per line, no newline. */
export function tabwriterLines(rows: string[][], opts: TabwriterOptions = {}): string[] {
  const minWidth = opts.minWidth ?? 4
  const padding = opts.padding ?? 4
  if (rows.length === 0) return []
  const aligned = Math.max(...rows.map((r) => r.length)) - 1
  if (aligned <= 0) return rows.map((r) => r[0] ?? '')
  // cli-table3 sizes each column as its widest cell + padding. Go's minwidth
  // only matters when that is narrower than minWidth, i.e. minWidth > padding.
  const colWidths =
    minWidth > padding
      ? Array.from({length: aligned}, (_, c) => Math.max(minWidth, Math.max(...rows.map((r) => (r[c] ?? '').length)) + padding))
      : []
  const table = new Table({
    chars: NO_BORDER,
    colWidths,
    wordWrap: false,
    style: {'padding-left': 0, 'padding-right': padding, head: [], border: [], compact: true},
  })
  for (const r of rows) table.push(Array.from({length: aligned}, (_, c) => r[c] ?? ''))
  const lines = table.toString().split('\n')
  return lines.map((line, i) => line + (rows[i]![aligned] ?? ''))
}

/** The whole table as text with a trailing newline (empty string for no rows). */
export function tabwriter(rows: string[][], opts?: TabwriterOptions): string {
  const lines = tabwriterLines(rows, opts)
  return lines.length ? lines.join('\n') + '\n' : ''
}
