// Terminal output for long commands: an ora spinner for preparation and a one-line progress bar
// while training, on a TTY; plain lines otherwise (logs, CI, pipes).
//
// ora 8 is an ES module; it is loaded with a real dynamic import (which TypeScript's CommonJS
// output would otherwise turn into require()). Where it cannot load, plain lines are used.

/** The part of ora's Ora interface used here. */
interface Spinner {
  text: string;
  start(text?: string): Spinner;
  stop(): Spinner;
  succeed(text?: string): Spinner;
  fail(text?: string): Spinner;
}
type OraFactory = (options: { text?: string; stream?: NodeJS.WritableStream; discardStdin?: boolean }) => Spinner;

// eslint-disable-next-line @typescript-eslint/no-implied-eval
const dynamicImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

let oraPromise: Promise<OraFactory | undefined> | undefined;

/** ora's default export, or undefined when it cannot be loaded. */
export function loadOra(): Promise<OraFactory | undefined> {
  oraPromise ??= dynamicImport('ora').then(
    (m) => (m as { default: OraFactory }).default,
    () => undefined,
  );
  return oraPromise;
}

export interface ReporterOptions {
  /** Where human-readable output goes. */
  stream: NodeJS.WriteStream;
  /** Suppress progress (spinner, bar, periodic lines); results still print. */
  quiet?: boolean;
  /** Force plain lines even on a TTY. */
  plain?: boolean;
}

/** Spinner + progress bar + lines, all on one stream, never garbling each other. */
export class Reporter {
  readonly tty: boolean;
  private spinner: Spinner | undefined;
  private spinnerText = '';
  private barLine = '';
  private lastBar = 0;
  private lastPlainText = '';
  private spinWanted = false;

  constructor(private readonly o: ReporterOptions) {
    this.tty = !!o.stream.isTTY && !o.plain;
    if (this.tty && !o.quiet) void loadOra(); // start loading now, so the first spinner shows at once
  }

  /** A line of output (clears and redraws the bar around it). */
  line(text: string): void {
    if (this.spinner) {
      this.spinner.stop();
      this.o.stream.write(text + '\n');
      this.spinner.start(this.spinnerText);
      return;
    }
    if (this.barLine) this.o.stream.write('\r\x1b[2K');
    this.o.stream.write(text + '\n');
    if (this.barLine) this.o.stream.write(this.barLine);
  }

  /** Progress messages: a line only when quiet is off. */
  info(text: string): void {
    if (!this.o.quiet) this.line(text);
  }

  /** Starts or updates the spinner (plain: one line per distinct message). */
  async spin(text: string): Promise<void> {
    if (this.o.quiet) return;
    this.spinnerText = text;
    if (!this.tty) {
      const head = text.replace(/\s*\d+(\.\d+)?%.*$/, '').replace(/\d+\/\d+.*$/, '');
      if (head !== this.lastPlainText) this.o.stream.write(text + '\n');
      this.lastPlainText = head;
      return;
    }
    this.spinWanted = true;
    if (this.spinner) {
      this.spinner.text = text;
      return;
    }
    const ora = await loadOra();
    // The spinner may have been ended, or started by another call, while ora was loading.
    const current = this.spinner as Spinner | undefined; // (TypeScript narrows this.spinner across the await)
    if (!this.spinWanted || current) {
      if (current) current.text = this.spinnerText;
      return;
    }
    if (!ora) {
      this.o.stream.write(text + '\n');
      return;
    }
    this.spinner = ora({ text: this.spinnerText, stream: this.o.stream, discardStdin: false }).start();
  }

  /** Ends the spinner with a success (or failure) mark. */
  spinDone(text?: string, ok = true): void {
    this.spinWanted = false;
    if (this.spinner) {
      if (ok) this.spinner.succeed(text ?? this.spinnerText);
      else this.spinner.fail(text ?? this.spinnerText);
      this.spinner = undefined;
    } else if (text && !this.o.quiet) this.o.stream.write(text + '\n');
    this.lastPlainText = '';
  }

  /** Redraws the progress bar (TTY only; at most ~10 times a second unless forced). */
  bar(text: string, force = false): void {
    if (!this.tty || this.o.quiet) return;
    const now = Date.now();
    if (!force && now - this.lastBar < 100) return;
    this.lastBar = now;
    const width = (this.o.stream.columns || 100) - 1;
    this.barLine = text.length > width ? text.slice(0, width) : text;
    this.o.stream.write('\r\x1b[2K' + this.barLine);
  }

  /** Removes the bar (before final output). */
  endBar(): void {
    if (this.barLine) this.o.stream.write('\r\x1b[2K');
    this.barLine = '';
  }

  stop(): void {
    this.spinWanted = false;
    this.spinner?.stop();
    this.spinner = undefined;
    this.endBar();
  }
}

/** A text bar of `width` cells for a fraction in [0, 1]. */
export function barCells(fraction: number, width = 20): string {
  const f = Math.min(1, Math.max(0, fraction));
  const full = Math.round(f * width);
  return '█'.repeat(full) + '░'.repeat(width - full);
}

/** 12345 → "12.3k". */
export function formatRate(x: number): string {
  if (!Number.isFinite(x)) return '?';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}
