(** * Soundness of the perfect-elimination-ordering check

    This file models the check that [panic_verifier::chordal::is_peo]
    performs (the parent test of Rose, Tarjan and Lueker) as a computable
    boolean function, and proves that when it answers [true]:

    - [is_peo_later_clique]: every vertex's later neighbourhood is a clique,
      i.e. the ordering is a perfect elimination ordering;
    - [is_peo_no_chordless_cycle]: the graph has no chordless cycle of
      length 4 or more, i.e. it is chordal.

    The model.  A graph on vertices [0 .. n-1] is a list of [n] neighbour
    lists: vertex [v]'s neighbours are [nth v g []] (the Rust code stores the
    same lists back to back in compressed-sparse-row arrays).  An ordering is
    a list of vertices; [order[0]] is eliminated first, and the position of
    [v] is its index in the list.  The check:

    + the ordering is a bijection onto [0 .. n-1]: it has [n] entries, each
      below [n], no two equal;
    + for every vertex [v], let its later neighbours be the neighbours with a
      larger position; if there are any, [parent v] is the one with the
      smallest position, and every other later neighbour of [v] must be a
      neighbour of [parent v].

    The only assumption on the graph is that it is undirected: [u] is in
    [v]'s list exactly when [v] is in [u]'s ([symmetric]).  Self-loops and
    repeated entries are allowed and change nothing.  Only the standard
    library is used, and no axiom. *)

From Coq Require Import List Arith Lia Bool.
Import ListNotations.

(** ** The model *)

Definition graph := list (list nat).

Definition nbrs (g : graph) (v : nat) : list nat := nth v g [].

(** Adjacency, as a proposition and as the membership test the check runs. *)
Definition adj (g : graph) (u v : nat) : Prop := In v (nbrs g u).

Definition adjb (g : graph) (u v : nat) : bool := existsb (Nat.eqb v) (nbrs g u).

(** The graph is undirected. *)
Definition symmetric (g : graph) : Prop := forall u v, adj g u v -> adj g v u.

(** Position of [v] in the ordering: its index, or the length of the list
    when [v] does not occur (the bijection test rules that out). *)
Fixpoint pos (order : list nat) (v : nat) : nat :=
  match order with
  | [] => 0
  | x :: t => if Nat.eqb x v then 0 else S (pos t v)
  end.

Fixpoint nodupb (l : list nat) : bool :=
  match l with
  | [] => true
  | x :: t => negb (existsb (Nat.eqb x) t) && nodupb t
  end.

(** The ordering is a bijection from [0 .. n-1] to positions. *)
Definition is_ordering (n : nat) (order : list nat) : bool :=
  Nat.eqb (length order) n && forallb (fun v => Nat.ltb v n) order && nodupb order.

(** The neighbours of [v] that come after it in the ordering. *)
Definition later (g : graph) (order : list nat) (v : nat) : list nat :=
  filter (fun w => Nat.ltb (pos order v) (pos order w)) (nbrs g v).

(** The element of [best :: l] with the smallest position (the first such). *)
Fixpoint min_pos (order : list nat) (best : nat) (l : list nat) : nat :=
  match l with
  | [] => best
  | w :: t =>
      min_pos order (if Nat.ltb (pos order w) (pos order best) then w else best) t
  end.

(** The later neighbour of [v] with the smallest position, if any. *)
Definition parent (g : graph) (order : list nat) (v : nat) : option nat :=
  match later g order v with
  | [] => None
  | w :: t => Some (min_pos order w t)
  end.

(** The check at one vertex: every later neighbour other than the parent is a
    neighbour of the parent. *)
Definition check_vertex (g : graph) (order : list nat) (v : nat) : bool :=
  match parent g order v with
  | None => true
  | Some p => forallb (fun w => Nat.eqb w p || adjb g p w) (later g order v)
  end.

(** The whole check. *)
Definition is_peo (g : graph) (order : list nat) : bool :=
  is_ordering (length g) order && forallb (check_vertex g order) order.

(** ** What is proved *)

(** A perfect elimination ordering: the later neighbours of every vertex are
    pairwise adjacent. *)
Definition later_clique (g : graph) (order : list nat) : Prop :=
  forall v w1 w2,
    adj g v w1 -> adj g v w2 ->
    pos order v < pos order w1 -> pos order v < pos order w2 ->
    w1 <> w2 -> adj g w1 w2.

(** Index [j] follows or precedes index [i] on a cycle of length [len]. *)
Definition cyc_next (len i j : nat) : Prop :=
  S i = j \/ S j = i \/ (i = 0 /\ S j = len) \/ (j = 0 /\ S i = len).

(** A chordless cycle: at least four distinct vertices [c_0 .. c_{k-1}],
    [c_i] adjacent to [c_{i+1}] and [c_{k-1}] to [c_0], and no other two of
    them adjacent. *)
Definition chordless_cycle (g : graph) (c : list nat) : Prop :=
  4 <= length c /\
  NoDup c /\
  (forall i, S i < length c -> adj g (nth i c 0) (nth (S i) c 0)) /\
  adj g (nth (pred (length c)) c 0) (nth 0 c 0) /\
  (forall i j, i < length c -> j < length c -> i <> j ->
     adj g (nth i c 0) (nth j c 0) -> cyc_next (length c) i j).

(** ** Facts about the pieces *)

Lemma adjb_adj : forall g u v, adjb g u v = true <-> adj g u v.
Proof.
  intros g u v. unfold adjb, adj. rewrite existsb_exists. split.
  - intros [x [Hin Heq]]. apply Nat.eqb_eq in Heq. subst. exact Hin.
  - intros H. exists v. split; [exact H | apply Nat.eqb_refl].
Qed.

Lemma in_later : forall g order v w,
  In w (later g order v) <-> adj g v w /\ pos order v < pos order w.
Proof.
  intros. unfold later, adj. rewrite filter_In, Nat.ltb_lt. tauto.
Qed.

Lemma nth_pos : forall order v, In v order -> nth (pos order v) order 0 = v.
Proof.
  induction order as [|x t IH]; simpl; intros v H; [contradiction|].
  destruct (Nat.eqb_spec x v) as [E|E]; [exact E|].
  destruct H as [H|H]; [contradiction|]. apply IH, H.
Qed.

Lemma pos_lt : forall order v, In v order -> pos order v < length order.
Proof.
  induction order as [|x t IH]; simpl; intros v H; [contradiction|].
  destruct (Nat.eqb_spec x v) as [E|E]; [lia|].
  destruct H as [H|H]; [contradiction|]. specialize (IH v H). lia.
Qed.

Lemma pos_inj : forall order u v,
  In u order -> In v order -> pos order u = pos order v -> u = v.
Proof.
  intros order u v Hu Hv E.
  rewrite <- (nth_pos order u Hu), <- (nth_pos order v Hv), E. reflexivity.
Qed.

Lemma nodupb_NoDup : forall l, nodupb l = true -> NoDup l.
Proof.
  induction l as [|x t IH]; simpl; intros H; constructor.
  - apply andb_true_iff in H as [H _]. apply negb_true_iff in H.
    intros Hin. assert (existsb (Nat.eqb x) t = true) as E.
    { apply existsb_exists. exists x. split; [exact Hin | apply Nat.eqb_refl]. }
    congruence.
  - apply andb_true_iff in H as [_ H]. apply IH, H.
Qed.

(** A bijection onto [0 .. n-1] contains every vertex below [n]. *)
Lemma ordering_complete : forall n order v,
  is_ordering n order = true -> v < n -> In v order.
Proof.
  intros n order v H Hv. unfold is_ordering in H.
  apply andb_true_iff in H as [H Hnd]. apply andb_true_iff in H as [Hlen Hrange].
  apply Nat.eqb_eq in Hlen. apply nodupb_NoDup in Hnd.
  rewrite forallb_forall in Hrange.
  assert (incl order (seq 0 n)) as Hincl.
  { intros x Hx. apply in_seq. specialize (Hrange x Hx).
    apply Nat.ltb_lt in Hrange. lia. }
  apply (NoDup_length_incl Hnd) in Hincl.
  - apply Hincl, in_seq. lia.
  - rewrite seq_length. lia.
Qed.

(** In an undirected graph every endpoint of an edge is a vertex. *)
Lemma adj_vertex : forall g u v, symmetric g -> adj g u v -> v < length g.
Proof.
  intros g u v Hs H. apply Hs in H. unfold adj, nbrs in H.
  destruct (Nat.lt_ge_cases v (length g)) as [L|L]; [exact L|].
  rewrite nth_overflow in H by exact L. contradiction.
Qed.

Lemma min_pos_spec : forall order l best,
  In (min_pos order best l) (best :: l) /\
  forall w, In w (best :: l) -> pos order (min_pos order best l) <= pos order w.
Proof.
  induction l as [|x t IH]; simpl; intros best.
  - split; [left; reflexivity|]. intros w [E|[]]. subst. lia.
  - set (b' := if Nat.ltb (pos order x) (pos order best) then x else best).
    destruct (IH b') as [Hin Hmin].
    assert (b' = x \/ b' = best) as Hb by (unfold b'; destruct (Nat.ltb _ _); auto).
    assert (pos order b' <= pos order best /\ pos order b' <= pos order x) as [B1 B2].
    { unfold b'. destruct (Nat.ltb_spec (pos order x) (pos order best)); lia. }
    pose proof (Hmin b' (or_introl eq_refl)) as M.
    split.
    + destruct Hin as [E|Hin]; [|right; right; exact Hin].
      rewrite <- E. destruct Hb as [Hb|Hb]; rewrite Hb; [right; left|left]; reflexivity.
    + intros w [E|[E|Hw]]; [subst w; lia|subst w; lia|].
      apply Hmin. right. exact Hw.
Qed.

Lemma parent_spec : forall g order v p,
  parent g order v = Some p ->
  In p (later g order v) /\
  forall w, In w (later g order v) -> pos order p <= pos order w.
Proof.
  intros g order v p. unfold parent.
  destruct (later g order v) as [|x t]; intros H; [discriminate|].
  injection H as E. subst p. apply min_pos_spec.
Qed.

Lemma parent_none : forall g order v,
  parent g order v = None -> later g order v = [].
Proof.
  intros g order v. unfold parent. destruct (later g order v); [reflexivity|discriminate].
Qed.

(** ** The ordering is a perfect elimination ordering *)

Theorem is_peo_later_clique : forall g order,
  symmetric g -> is_peo g order = true -> later_clique g order.
Proof.
  intros g order Hs H. unfold is_peo in H.
  apply andb_true_iff in H as [Hord Hchk]. rewrite forallb_forall in Hchk.
  (* Every endpoint of an edge occurs in the ordering. *)
  assert (forall u w, adj g u w -> In w order) as Hin.
  { intros u w E. apply (ordering_complete (length g)); [exact Hord|].
    apply (adj_vertex g u w Hs E). }
  (* Induction on the number of positions after [v]. *)
  assert (forall m v, length order - pos order v <= m -> forall w1 w2,
            adj g v w1 -> adj g v w2 ->
            pos order v < pos order w1 -> pos order v < pos order w2 ->
            w1 <> w2 -> adj g w1 w2) as Main.
  { induction m as [|m IH]; intros v Hm w1 w2 A1 A2 P1 P2 D.
    - (* no position after [v]: [w1] cannot come later *)
      pose proof (pos_lt order w1 (Hin v w1 A1)). lia.
    - assert (In w1 (later g order v)) as L1 by (apply in_later; auto).
      assert (In w2 (later g order v)) as L2 by (apply in_later; auto).
      assert (In v order) as Hv by (apply (Hin w1); apply Hs; exact A1).
      specialize (Hchk v Hv). unfold check_vertex in Hchk.
      destruct (parent g order v) as [p|] eqn:Hp;
        [|apply parent_none in Hp; rewrite Hp in L1; contradiction].
      destruct (parent_spec g order v p Hp) as [Lp Pmin].
      apply in_later in Lp as [Ap Pp].
      rewrite forallb_forall in Hchk.
      (* [w] is [p] or adjacent to [p] *)
      assert (forall w, In w (later g order v) -> w = p \/ adj g p w) as Hc.
      { intros w Lw. specialize (Hchk w Lw). apply orb_true_iff in Hchk.
        destruct Hchk as [E|E]; [left; apply Nat.eqb_eq, E|right; apply adjb_adj, E]. }
      destruct (Nat.eq_dec w1 p) as [E1|E1].
      + subst w1. destruct (Hc w2 L2) as [E|E]; [congruence|exact E].
      + destruct (Nat.eq_dec w2 p) as [E2|E2].
        * subst w2. destruct (Hc w1 L1) as [E|E]; [congruence|apply Hs, E].
        * (* both come after [p] and are adjacent to it: use [p]'s check *)
          destruct (Hc w1 L1) as [E|B1]; [congruence|].
          destruct (Hc w2 L2) as [E|B2]; [congruence|].
          assert (pos order p < pos order w1) as Q1.
          { pose proof (Pmin w1 L1).
            assert (pos order p <> pos order w1); [|lia].
            intros E. apply E1. symmetry.
            apply (pos_inj order); [apply (Hin v); exact Ap|apply (Hin v); exact A1|exact E]. }
          assert (pos order p < pos order w2) as Q2.
          { pose proof (Pmin w2 L2).
            assert (pos order p <> pos order w2); [|lia].
            intros E. apply E2. symmetry.
            apply (pos_inj order); [apply (Hin v); exact Ap|apply (Hin v); exact A2|exact E]. }
          pose proof (pos_lt order p (Hin v p Ap)).
          apply (IH p); [lia|exact B1|exact B2|exact Q1|exact Q2|exact D]. }
  intros v. apply (Main (length order - pos order v) v). lia.
Qed.

(** ** No chordless cycle *)

(** A function on [0 .. len-1] attains its minimum. *)
Lemma exists_min_index : forall (f : nat -> nat) len,
  0 < len -> exists i, i < len /\ forall j, j < len -> f i <= f j.
Proof.
  intros f len. induction len as [|len IH]; intros H; [lia|].
  destruct (Nat.eq_dec len 0) as [E|E].
  - subst. exists 0. split; [lia|]. intros j Hj. assert (j = 0) by lia. subst. lia.
  - destruct IH as [i [Hi Hmin]]; [lia|].
    destruct (Nat.le_gt_cases (f i) (f len)) as [C|C].
    + exists i. split; [lia|]. intros j Hj.
      destruct (Nat.eq_dec j len); [subst; exact C|apply Hmin; lia].
    + exists len. split; [lia|]. intros j Hj.
      destruct (Nat.eq_dec j len); [subst; lia|]. specialize (Hmin j ltac:(lia)). lia.
Qed.

Theorem is_peo_no_chordless_cycle : forall g order,
  symmetric g -> is_peo g order = true -> forall c, ~ chordless_cycle g c.
Proof.
  intros g order Hs H c [Hlen [Hnd [Hedge [Hlast Hchord]]]].
  pose proof (is_peo_later_clique g order Hs H) as Hcl.
  unfold is_peo in H. apply andb_true_iff in H as [Hord _].
  set (k := length c) in *.
  (* Each cycle vertex is a vertex of the graph, hence in the ordering. *)
  assert (forall i, i < k -> In (nth i c 0) order) as Hin.
  { intros i Hi. apply (ordering_complete (length g)); [exact Hord|].
    destruct (Nat.eq_dec i 0) as [E|E].
    - subst i. apply (adj_vertex g (nth (pred k) c 0)); [exact Hs|exact Hlast].
    - apply (adj_vertex g (nth (pred i) c 0)); [exact Hs|].
      replace i with (S (pred i)) at 2 by lia. apply Hedge. lia. }
  (* Distinct indices name distinct vertices, with distinct positions. *)
  assert (forall i j, i < k -> j < k -> i <> j ->
            pos order (nth i c 0) <> pos order (nth j c 0)) as Hdist.
  { intros i j Hi Hj D E. apply D.
    apply (pos_inj order) in E; [|apply Hin; exact Hi|apply Hin; exact Hj].
    apply (NoDup_nth c 0) in E; assumption. }
  (* The cycle vertex that comes first in the ordering... *)
  destruct (exists_min_index (fun i => pos order (nth i c 0)) k ltac:(lia))
    as [i [Hi Hmin]]. simpl in Hmin.
  (* ... and its two neighbours on the cycle. *)
  set (prev := if Nat.eqb i 0 then pred k else pred i).
  set (next := if Nat.eqb (S i) k then 0 else S i).
  assert (prev < k /\ next < k /\ prev <> i /\ next <> i /\ prev <> next
          /\ ~ cyc_next k next prev) as [Hp [Hn [Dp [Dn [Dpn Nc]]]]].
  { unfold prev, next, cyc_next.
    destruct (Nat.eqb_spec i 0); destruct (Nat.eqb_spec (S i) k); lia. }
  assert (adj g (nth i c 0) (nth next c 0)) as An.
  { unfold next. destruct (Nat.eqb_spec (S i) k) as [E|E].
    - replace i with (pred k) by lia. exact Hlast.
    - apply Hedge. lia. }
  assert (adj g (nth i c 0) (nth prev c 0)) as Ap.
  { apply Hs. unfold prev. destruct (Nat.eqb_spec i 0) as [E|E].
    - subst i. exact Hlast.
    - replace i with (S (pred i)) at 2 by lia. apply Hedge. lia. }
  (* Both come later than the minimum, so they are adjacent: a chord. *)
  assert (adj g (nth next c 0) (nth prev c 0)) as Chord.
  { apply (Hcl (nth i c 0)); [exact An|exact Ap| | |].
    - pose proof (Hmin next Hn). pose proof (Hdist i next Hi Hn ltac:(lia)). lia.
    - pose proof (Hmin prev Hp). pose proof (Hdist i prev Hi Hp ltac:(lia)). lia.
    - intros E. apply (NoDup_nth c 0) in E; [lia|exact Hnd|exact Hn|exact Hp]. }
  apply Nc, Hchord; [exact Hn|exact Hp|lia|exact Chord].
Qed.

(** ** Both together *)

Corollary is_peo_sound : forall g order,
  symmetric g -> is_peo g order = true ->
  later_clique g order /\ forall c, ~ chordless_cycle g c.
Proof.
  intros g order Hs H. split.
  - apply is_peo_later_clique; assumption.
  - apply is_peo_no_chordless_cycle with (order := order); assumption.
Qed.

(** ** The check on small graphs, by computation *)

(** A triangle with a pendant vertex: 3 - 0 - 1 - 2 - 0. *)
Definition triangle_pendant : graph := [[1; 2; 3]; [0; 2]; [0; 1]; [0]].

Example triangle_pendant_ok : is_peo triangle_pendant [3; 1; 0; 2] = true.
Proof. reflexivity. Qed.

(** Eliminating the centre first is not a perfect elimination ordering. *)
Example triangle_pendant_bad : is_peo triangle_pendant [0; 1; 2; 3] = false.
Proof. reflexivity. Qed.

(** A square 0 - 1 - 2 - 3 - 0 is not chordal: every ordering fails. *)
Definition square : graph := [[1; 3]; [0; 2]; [1; 3]; [0; 2]].

Fixpoint insert_all (x : nat) (l : list nat) : list (list nat) :=
  match l with
  | [] => [[x]]
  | y :: t => (x :: y :: t) :: map (cons y) (insert_all x t)
  end.

Fixpoint perms (l : list nat) : list (list nat) :=
  match l with
  | [] => [[]]
  | x :: t => flat_map (insert_all x) (perms t)
  end.

Example square_rejected :
  length (perms [0; 1; 2; 3]) = 24 /\
  forallb (fun order => negb (is_peo square order)) (perms [0; 1; 2; 3]) = true.
Proof. split; reflexivity. Qed.

(** An ordering that is not a bijection is rejected. *)
Example repeated_vertex_rejected : is_peo triangle_pendant [3; 1; 1; 2] = false.
Proof. reflexivity. Qed.
