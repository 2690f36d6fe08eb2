/**
 * A virtualized tree: only the rows in view exist in the DOM, so a model with
 * 50,000 tensors costs the same to draw as one with 50. Expanding, collapsing and
 * filtering rebuild a flat list of visible nodes (a plain array walk), then the
 * few row elements in view are reused for whatever rows are now under them.
 */
import type { TreeNodeData } from '../../src/shared/protocol';
import { h } from '../shared/dom';

/** The tree's nodes are the protocol's own: `path` is the key, a tensor's path is its name. */
export type TreeNode = TreeNodeData;

export interface TreeCallbacks {
  /** Right-aligned detail text; asked only for rows that are drawn. */
  describe(n: TreeNode): string;
  onSelect(n: TreeNode): void;
  onToggle(n: TreeNode): void;
  onScroll(top: number): void;
}

/** Row height in px; matches VS Code's list rows (22px) so the tree looks native. */
export const ROW_HEIGHT = 22;
/** Rows drawn above and below the viewport, so fast scrolling does not show blanks. */
const OVERSCAN = 10;

interface Row {
  node: TreeNode;
  depth: number;
}

export class TreeView {
  readonly expanded = new Set<string>();
  private readonly parent = new Map<TreeNode, TreeNode>();
  private readonly byId = new Map<string, TreeNode>();
  private readonly byTensor = new Map<number, TreeNode>();
  private rows: Row[] = [];
  /** When filtering: the nodes that match or have a matching descendant. */
  private kept: Set<TreeNode> | undefined;
  private selectedId: string | undefined;
  private readonly spacer: HTMLElement;
  private readonly pool: HTMLElement[] = [];
  private frame = 0;

  constructor(
    private readonly host: HTMLElement,
    private readonly root: TreeNode,
    private readonly cb: TreeCallbacks,
  ) {
    const index = (n: TreeNode) => {
      this.byId.set(n.path, n);
      if (n.tensor !== undefined) this.byTensor.set(n.tensor, n);
      for (const c of n.children ?? []) {
        this.parent.set(c, n);
        index(c);
      }
    };
    index(root);
    this.spacer = h('div', { class: 'tree-spacer' });
    host.append(this.spacer);
    host.addEventListener('scroll', () => {
      this.schedule();
      cb.onScroll(host.scrollTop);
    });
    host.addEventListener('click', (e) => this.onClick(e));
    host.addEventListener('keydown', (e) => this.onKey(e));
    new ResizeObserver(() => this.schedule()).observe(host);
    this.rebuild();
  }

  get scrollTop(): number {
    return this.host.scrollTop;
  }
  set scrollTop(v: number) {
    this.host.scrollTop = v;
    this.render();
  }

  /** Number of rows currently visible in the (virtual) list. */
  get rowCount(): number {
    return this.rows.length;
  }

  setExpanded(ids: Set<string>): void {
    this.expanded.clear();
    for (const id of ids) if (this.byId.has(id)) this.expanded.add(id);
    this.rebuild();
  }

  /** Filters by substring (case-insensitive) or by `/regex/flags`; matching subtrees open. */
  setFilter(text: string): { matches: number; error?: string } {
    let test: ((s: string) => boolean) | undefined;
    const re = /^\/(.+)\/([a-z]*)$/.exec(text.trim());
    if (re) {
      try {
        const rx = new RegExp(re[1]!, re[2]!.replace(/[gy]/g, ''));
        test = (s) => rx.test(s);
      } catch (e) {
        this.kept = undefined;
        this.rebuild();
        return { matches: 0, error: (e as Error).message };
      }
    } else if (text.trim()) {
      const needle = text.trim().toLowerCase();
      test = (s) => s.toLowerCase().includes(needle);
    }
    if (!test) {
      this.kept = undefined;
      this.rebuild();
      return { matches: this.byTensor.size };
    }
    const kept = new Set<TreeNode>();
    let matches = 0;
    const walk = (n: TreeNode): boolean => {
      let keep = false;
      if (n.tensor !== undefined && test!(n.path)) {
        keep = true;
        matches++;
      }
      for (const c of n.children ?? []) if (walk(c)) keep = true;
      if (keep) kept.add(n);
      return keep;
    };
    walk(this.root);
    this.kept = kept;
    this.host.scrollTop = 0;
    this.rebuild();
    return { matches };
  }

  toggle(id: string): void {
    const n = this.byId.get(id);
    if (!n?.children?.length || this.kept) return;
    if (this.expanded.has(id)) this.expanded.delete(id);
    else this.expanded.add(id);
    this.rebuild();
    this.cb.onToggle(n);
  }

  selectPath(id: string, notify = true): void {
    const n = this.byId.get(id);
    if (n) this.selectNode(n, notify);
  }

  selectTensor(index: number): void {
    const n = this.byTensor.get(index);
    if (n) this.selectNode(n, true);
  }

  private selectNode(n: TreeNode, notify: boolean): void {
    // Open every ancestor, so the row exists, then bring it into view.
    if (!this.kept || !this.kept.has(n)) {
      this.kept = undefined;
      for (let p = this.parent.get(n); p; p = this.parent.get(p)) this.expanded.add(p.path);
      this.rebuild();
    }
    this.selectedId = n.path;
    const i = this.rows.findIndex((r) => r.node === n);
    if (i >= 0) {
      const top = i * ROW_HEIGHT;
      if (top < this.host.scrollTop || top + ROW_HEIGHT > this.host.scrollTop + this.host.clientHeight) this.host.scrollTop = Math.max(0, top - this.host.clientHeight / 2);
    }
    this.render();
    if (notify) this.cb.onSelect(n);
  }

  private rebuild(): void {
    const rows: Row[] = [];
    const kept = this.kept;
    const visit = (n: TreeNode, depth: number) => {
      for (const c of n.children ?? []) {
        if (kept && !kept.has(c)) continue;
        rows.push({ node: c, depth });
        if (c.children?.length && (kept || this.expanded.has(c.path))) visit(c, depth + 1);
      }
    };
    visit(this.root, 0);
    this.rows = rows;
    this.spacer.style.height = `${rows.length * ROW_HEIGHT}px`;
    this.render();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Draws the rows under the viewport, reusing row elements. */
  render(): void {
    const height = this.host.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.host.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((this.host.scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
    const need = last - first;
    while (this.pool.length < need) {
      const el = h('div', { class: 'tree-row', role: 'treeitem' }, h('span', { class: 'twistie' }), h('span', { class: 'label' }), h('span', { class: 'meta' }));
      this.pool.push(el);
      this.host.append(el);
    }
    for (let k = 0; k < this.pool.length; k++) {
      const el = this.pool[k]!;
      const row = this.rows[first + k];
      if (k >= need || !row) {
        el.hidden = true;
        continue;
      }
      el.hidden = false;
      const { node, depth } = row;
      const open = !!node.children?.length && (!!this.kept || this.expanded.has(node.path));
      el.style.transform = `translateY(${(first + k) * ROW_HEIGHT}px)`;
      el.style.paddingLeft = `${8 + depth * 14}px`;
      el.dataset.id = node.path;
      el.dataset.kind = node.kind;
      el.setAttribute('aria-level', String(depth + 1));
      el.setAttribute('aria-selected', String(node.path === this.selectedId));
      if (node.children?.length) el.setAttribute('aria-expanded', String(open));
      else el.removeAttribute('aria-expanded');
      el.classList.toggle('selected', node.path === this.selectedId);
      el.children[0]!.textContent = node.children?.length ? (open ? '▾' : '▸') : '';
      el.children[1]!.textContent = node.label;
      el.children[2]!.textContent = this.cb.describe(node);
      el.title = node.path;
    }
  }

  private onClick(e: MouseEvent): void {
    const el = (e.target as HTMLElement).closest<HTMLElement>('.tree-row');
    const id = el?.dataset.id;
    if (!id) return;
    const n = this.byId.get(id)!;
    if (n.children?.length) this.toggle(id);
    this.selectNode(n, true);
    this.host.focus();
  }

  private onKey(e: KeyboardEvent): void {
    const i = this.rows.findIndex((r) => r.node.path === this.selectedId);
    const at = (j: number) => this.rows[Math.max(0, Math.min(this.rows.length - 1, j))]?.node;
    let target: TreeNode | undefined;
    const cur = this.rows[i]?.node;
    switch (e.key) {
      case 'ArrowDown':
        target = at(i + 1);
        break;
      case 'ArrowUp':
        target = at(i - 1);
        break;
      case 'ArrowRight':
        if (cur?.children?.length && !this.expanded.has(cur.path)) this.toggle(cur.path);
        else target = at(i + 1);
        break;
      case 'ArrowLeft':
        if (cur?.children?.length && this.expanded.has(cur.path)) this.toggle(cur.path);
        else if (cur) target = this.parent.get(cur) !== this.root ? this.parent.get(cur) : undefined;
        break;
      case 'Enter':
      case ' ':
        if (cur?.children?.length) this.toggle(cur.path);
        break;
      default:
        return;
    }
    e.preventDefault();
    if (target) this.selectNode(target, true);
  }
}
