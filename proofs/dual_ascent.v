(** * Projected dual ascent does not move away from its fixed point

    The price controller updates the prices every period by projected dual
    ascent (DESIGN section 4, "Prices"):

      p+ = max(0, p + a * (u(p) - c))

    where [u(p)] is the resource usage at prices [p], [c] the capacity and
    [a > 0] the step.  With [p*] a fixed point of this map, the Lyapunov
    function is [V(p) = |p - p*|^2].  This file proves:

    - [scalar_step_nonincreasing]: one resource, [u] non-increasing and
      [L]-Lipschitz, [0 < a] and [a * L <= 2]: [V(p+) <= V(p)] for every [p];
      [scalar_step_nonincreasing_lt] is the same with the issue's wording
      [0 < a < 2 / L], and [scalar_iterates_nonincreasing] follows [V] along
      every trajectory.
    - [separable_step_nonincreasing]: several resources whose usages each
      depend on their own price only, with a step [a_i] and a constant [L_i]
      per resource, [a_i * L_i <= 2]: every diagonal (weighted) [V] is
      non-increasing.
    - [proj_weighted_toward_nonneg]: clamping at 0, coordinate by coordinate,
      never increases a diagonal [V] centred at a non-negative point; so a
      bound certified for the unprojected map also holds for the projected
      one ([projected_bound_from_unprojected]).
    - [step_nonincreasing]: [n] resources, any non-negative diagonal weights,
      usage map co-coercive in the weighted inner product, [0 < a],
      [a * L <= 2]: [V(p+) <= V(p)].
    - [monotone_lipschitz_not_enough]: in two dimensions, monotone and
      1-Lipschitz is not enough: a rotation makes [V] grow for every step
      [a > 0].  Co-coercivity in the theorem above cannot be weakened to
      monotonicity.

    Only the standard library is used; the real numbers bring the axioms of
    the standard library's construction of [R] and nothing else (the script
    [check.sh] prints them and fails on any other). *)

From Coq Require Import Reals Lra Lia.
Open Scope R_scope.

(** ** Clamping at zero *)

Definition proj (x : R) : R := Rmax 0 x.

Lemma proj_nonneg : forall x, 0 <= proj x.
Proof. intros x. unfold proj. apply Rmax_l. Qed.

(** Clamping is non-expansive. *)
Lemma proj_nonexpansive : forall x y, (proj x - proj y) ^ 2 <= (x - y) ^ 2.
Proof.
  intros x y. pose proof (pow2_ge_0 (x - y)). unfold proj, Rmax.
  destruct (Rle_dec 0 x); destruct (Rle_dec 0 y); nra.
Qed.

(** Clamping moves a point no further from any non-negative point. *)
Lemma proj_toward_nonneg : forall x q, 0 <= q -> (proj x - q) ^ 2 <= (x - q) ^ 2.
Proof.
  intros x q Hq. pose proof (pow2_ge_0 (x - q)). unfold proj, Rmax.
  destruct (Rle_dec 0 x); nra.
Qed.

(** ** One resource *)

(** One step of projected dual ascent. *)
Definition step (a c : R) (u : R -> R) (p : R) : R := proj (p + a * (u p - c)).

(** Usage does not grow when the price grows: [p |-> c - u p] is monotone. *)
Definition nonincreasing (u : R -> R) : Prop := forall x y, x <= y -> u y <= u x.

Definition lipschitz (L : R) (u : R -> R) : Prop :=
  forall x y, Rabs (u x - u y) <= L * Rabs (x - y).

(** In one dimension, monotone and [L]-Lipschitz give co-coercivity. *)
Lemma scalar_cocoercive : forall u L x y,
  nonincreasing u -> lipschitz L u ->
  (u x - u y) ^ 2 <= - L * ((u x - u y) * (x - y)).
Proof.
  intros u L x y Hm Hl. specialize (Hl x y).
  destruct (Rle_dec x y) as [Hxy|Hxy].
  - pose proof (Hm x y Hxy) as M.
    rewrite (Rabs_pos_eq (u x - u y)) in Hl by lra.
    rewrite (Rabs_left1 (x - y)) in Hl by lra. nra.
  - pose proof (Hm y x ltac:(lra)) as M.
    rewrite (Rabs_left1 (u x - u y)) in Hl by lra.
    rewrite (Rabs_pos_eq (x - y)) in Hl by lra. nra.
Qed.

(** A Lipschitz constant is non-negative. *)
Lemma lipschitz_nonneg : forall L u, lipschitz L u -> 0 <= L.
Proof.
  intros L u H. specialize (H 1 0). pose proof (Rabs_pos (u 1 - u 0)).
  replace (1 - 0) with 1 in H by ring. rewrite Rabs_R1 in H. lra.
Qed.

(** The key inequality, for one coordinate: [d] the distance to the fixed
    point, [e] the change in usage, [e^2 <= -L * e * d]. *)
Lemma ascent_inequality : forall a L d e,
  0 <= L -> 0 < a -> a * L <= 2 -> e ^ 2 <= - L * (e * d) -> (d + a * e) ^ 2 <= d ^ 2.
Proof.
  intros a L d e HL Ha HaL H.
  assert (e * d <= 0 \/ e = 0) as [S|S].
  { destruct (Req_dec e 0) as [E|E]; [right; exact E|left].
    assert (0 < e ^ 2) by (pose proof (Rsqr_pos_lt e E); unfold Rsqr in *; nra).
    nra. }
  - assert (a ^ 2 * e ^ 2 <= a ^ 2 * (- L * (e * d))) by (apply Rmult_le_compat_l; nra).
    assert (0 <= - (a * (e * d)) * (2 - a * L)) by (apply Rmult_le_pos; nra).
    nra.
  - subst e. nra.
Qed.

Theorem scalar_step_nonincreasing :
  forall (u : R -> R) (c a L pstar : R),
  nonincreasing u -> lipschitz L u ->
  0 < a -> a * L <= 2 ->
  pstar = step a c u pstar ->
  forall p, (step a c u p - pstar) ^ 2 <= (p - pstar) ^ 2.
Proof.
  intros u c a L pstar Hm Hl Ha HaL Hfix p.
  rewrite Hfix at 1. unfold step.
  eapply Rle_trans; [apply proj_nonexpansive|].
  replace (p + a * (u p - c) - (pstar + a * (u pstar - c)))
    with ((p - pstar) + a * (u p - u pstar)) by ring.
  apply (ascent_inequality a L); [apply (lipschitz_nonneg L u Hl)|exact Ha|exact HaL|].
  apply scalar_cocoercive; assumption.
Qed.

(** The same with the hypothesis on the step as the issue words it. *)
Corollary scalar_step_nonincreasing_lt :
  forall (u : R -> R) (c a L pstar : R),
  nonincreasing u -> lipschitz L u ->
  0 < L -> 0 < a < 2 / L ->
  pstar = step a c u pstar ->
  forall p, 0 <= p -> (step a c u p - pstar) ^ 2 <= (p - pstar) ^ 2.
Proof.
  intros u c a L pstar Hm Hl HL [Ha HaL] Hfix p _.
  apply (scalar_step_nonincreasing u c a L); try assumption.
  apply Rmult_lt_compat_r with (r := L) in HaL; [|exact HL].
  unfold Rdiv in HaL. rewrite Rmult_assoc, Rinv_l in HaL by lra. lra.
Qed.

Fixpoint iterate (a c : R) (u : R -> R) (k : nat) (p : R) : R :=
  match k with
  | O => p
  | S k => step a c u (iterate a c u k p)
  end.

(** Along a trajectory, [V] never increases. *)
Corollary scalar_iterates_nonincreasing :
  forall (u : R -> R) (c a L pstar : R),
  nonincreasing u -> lipschitz L u ->
  0 < a -> a * L <= 2 ->
  pstar = step a c u pstar ->
  forall p k,
    (iterate a c u (S k) p - pstar) ^ 2 <= (iterate a c u k p - pstar) ^ 2 /\
    (iterate a c u k p - pstar) ^ 2 <= (p - pstar) ^ 2.
Proof.
  intros u c a L pstar Hm Hl Ha HaL Hfix p k.
  assert (forall q, (step a c u q - pstar) ^ 2 <= (q - pstar) ^ 2) as H1
    by (apply (scalar_step_nonincreasing u c a L); assumption).
  split; [apply H1|].
  induction k as [|k IH]; simpl; [lra|].
  eapply Rle_trans; [apply H1|exact IH].
Qed.

(** ** Several resources: vectors, weighted sums *)

(** A vector of [n] prices is a function on [0 .. n-1]; the rest is ignored. *)
Fixpoint sum (n : nat) (f : nat -> R) : R :=
  match n with
  | O => 0
  | S m => sum m f + f m
  end.

Lemma sum_le : forall n f g,
  (forall i, (i < n)%nat -> f i <= g i) -> sum n f <= sum n g.
Proof.
  induction n as [|n IH]; simpl; intros f g H; [lra|].
  apply Rplus_le_compat; [apply IH; intros i Hi; apply H; lia|apply H; lia].
Qed.

Lemma sum_ext : forall n f g,
  (forall i, (i < n)%nat -> f i = g i) -> sum n f = sum n g.
Proof.
  intros n f g H. apply Rle_antisym; apply sum_le; intros i Hi; rewrite H by exact Hi; lra.
Qed.

Lemma sum_plus : forall n f g, sum n (fun i => f i + g i) = sum n f + sum n g.
Proof. induction n as [|n IH]; simpl; intros f g; [ring|rewrite IH; ring]. Qed.

Lemma sum_scal : forall n k f, sum n (fun i => k * f i) = k * sum n f.
Proof. induction n as [|n IH]; simpl; intros k f; [ring|rewrite IH; ring]. Qed.

Lemma sum_nonneg : forall n f, (forall i, (i < n)%nat -> 0 <= f i) -> 0 <= sum n f.
Proof.
  intros n f H. replace 0 with (sum n (fun _ => 0)).
  - apply sum_le. exact H.
  - clear H. induction n as [|n IH]; simpl; [reflexivity|rewrite IH; ring].
Qed.

(** Diagonal (weighted) squared norm and inner product. *)
Definition wnorm2 (n : nat) (w x : nat -> R) : R := sum n (fun i => w i * x i ^ 2).

Definition winner (n : nat) (w x y : nat -> R) : R := sum n (fun i => w i * (x i * y i)).

Definition nonneg (n : nat) (x : nat -> R) : Prop := forall i, (i < n)%nat -> 0 <= x i.

(** The diagonal Lyapunov function [V(p) = sum_i w_i (p_i - q_i)^2]. *)
Definition V (n : nat) (w q p : nat -> R) : R := wnorm2 n w (fun i => p i - q i).

(** Clamping every coordinate at 0. *)
Definition projv (x : nat -> R) : nat -> R := fun i => proj (x i).

(** One step with [n] resources; the step may differ per resource. *)
Definition stepv (a c : nat -> R) (u : (nat -> R) -> nat -> R) (p : nat -> R) : nat -> R :=
  fun i => proj (p i + a i * (u p i - c i)).

(** Clamping never increases a diagonal [V] centred at a non-negative point.
    This is the statement the verifier relies on to carry a drift bound
    certified for the unprojected map over to the projected one. *)
Theorem proj_weighted_toward_nonneg : forall n w q x,
  nonneg n w -> nonneg n q -> V n w q (projv x) <= V n w q x.
Proof.
  intros n w q x Hw Hq. unfold V, wnorm2, projv.
  apply sum_le. intros i Hi. apply Rmult_le_compat_l; [apply Hw, Hi|].
  apply proj_toward_nonneg, Hq, Hi.
Qed.

Corollary projected_bound_from_unprojected : forall n w q x B,
  nonneg n w -> nonneg n q -> V n w q x <= B -> V n w q (projv x) <= B.
Proof.
  intros n w q x B Hw Hq H. eapply Rle_trans; [|exact H].
  apply proj_weighted_toward_nonneg; assumption.
Qed.

(** *** Separable usage: each resource's usage depends on its own price *)

Theorem separable_step_nonincreasing :
  forall (n : nat) (w a c L pstar : nat -> R) (ui : nat -> R -> R),
  nonneg n w ->
  (forall i, (i < n)%nat ->
     nonincreasing (ui i) /\ lipschitz (L i) (ui i) /\ 0 < a i /\ a i * L i <= 2) ->
  let u := fun p i => ui i (p i) in
  (forall i, (i < n)%nat -> pstar i = stepv a c u pstar i) ->
  forall p, V n w pstar (stepv a c u p) <= V n w pstar p.
Proof.
  intros n w a c L pstar ui Hw Hi u Hfix p.
  unfold V, wnorm2. apply sum_le. intros i Hlt.
  apply Rmult_le_compat_l; [apply Hw, Hlt|].
  destruct (Hi i Hlt) as [Hm [Hl [Ha HaL]]].
  apply (scalar_step_nonincreasing (ui i) (c i) (a i) (L i) (pstar i) Hm Hl Ha HaL).
  exact (Hfix i Hlt).
Qed.

(** *** General usage: co-coercivity *)

(** The excess-demand map [p |-> u p - c] is [1/L]-co-coercive (with a minus
    sign, as usage falls when prices rise) in the weighted inner product:
    [|u x - u y|^2 <= - L <u x - u y, x - y>].  This holds, for instance, when
    [c - u] is the gradient of a convex [L]-smooth function, and in one
    dimension for every non-increasing [L]-Lipschitz [u]
    ([scalar_cocoercive]); it does not follow from monotonicity and the
    Lipschitz bound alone in two or more dimensions
    ([monotone_lipschitz_not_enough]). *)
Definition cocoercive (n : nat) (w : nat -> R) (L : R) (u : (nat -> R) -> nat -> R) : Prop :=
  forall x y,
    wnorm2 n w (fun i => u x i - u y i)
      <= - L * winner n w (fun i => u x i - u y i) (fun i => x i - y i).

Theorem step_nonincreasing :
  forall (n : nat) (w c : nat -> R) (u : (nat -> R) -> nat -> R) (a L : R)
         (pstar : nat -> R),
  nonneg n w -> cocoercive n w L u ->
  0 < L -> 0 < a -> a * L <= 2 ->
  (forall i, (i < n)%nat -> pstar i = stepv (fun _ => a) c u pstar i) ->
  forall p, V n w pstar (stepv (fun _ => a) c u p) <= V n w pstar p.
Proof.
  intros n w c u a L pstar Hw Hco HL Ha HaL Hfix p.
  set (d := fun i => p i - pstar i).
  set (e := fun i => u p i - u pstar i).
  (* Clamping both points is non-expansive, coordinate by coordinate. *)
  assert (V n w pstar (stepv (fun _ => a) c u p)
          <= sum n (fun i => w i * (d i + a * e i) ^ 2)) as H1.
  { unfold V, wnorm2. apply sum_le. intros i Hi.
    apply Rmult_le_compat_l; [apply Hw, Hi|].
    rewrite (Hfix i Hi). unfold stepv.
    eapply Rle_trans; [apply proj_nonexpansive|]. unfold d, e. right. ring. }
  (* Expand the square. *)
  assert (sum n (fun i => w i * (d i + a * e i) ^ 2)
          = V n w pstar p + 2 * a * winner n w e d + a ^ 2 * wnorm2 n w e) as H2.
  { unfold V, winner, wnorm2. rewrite <- !sum_scal, <- !sum_plus.
    apply sum_ext. intros i _. unfold d. ring. }
  pose proof (Hco p pstar) as H3. fold e in H3.
  replace (fun i => p i - pstar i) with d in H3 by reflexivity.
  assert (0 <= wnorm2 n w e) as H4.
  { apply sum_nonneg. intros i Hi. apply Rmult_le_pos; [apply Hw, Hi|apply pow2_ge_0]. }
  assert (winner n w e d <= 0) as H5 by nra.
  assert (a ^ 2 * wnorm2 n w e <= a ^ 2 * (- L * winner n w e d))
    by (apply Rmult_le_compat_l; nra).
  assert (0 <= - (a * winner n w e d) * (2 - a * L)) by (apply Rmult_le_pos; nra).
  nra.
Qed.

(** ** Monotone and Lipschitz is not enough in two dimensions *)

(** Usage [u(p) = J p] for the rotation [J (x, y) = (-y, x)], capacity 0,
    unit weights: [c - u] is monotone ([<u x - u y, x - y> = 0]) and 1-Lipschitz,
    0 is a fixed point, yet from [(1, 0)] one step of any size [a > 0] goes
    to [(1, a)], further from 0. *)
Definition rot (p : nat -> R) : nat -> R :=
  fun i => match i with O => - p 1%nat | _ => p 0%nat end.

Definition ones : nat -> R := fun _ => 1.
Definition zeros : nat -> R := fun _ => 0.
Definition e1 : nat -> R := fun i => match i with O => 1 | _ => 0 end.

Theorem monotone_lipschitz_not_enough : forall a, 0 < a ->
  (forall x y, winner 2 ones (fun i => rot x i - rot y i) (fun i => x i - y i) <= 0) /\
  (forall x y, wnorm2 2 ones (fun i => rot x i - rot y i)
               <= 1 ^ 2 * wnorm2 2 ones (fun i => x i - y i)) /\
  (forall i, (i < 2)%nat -> zeros i = stepv (fun _ => a) zeros rot zeros i) /\
  V 2 ones zeros e1 < V 2 ones zeros (stepv (fun _ => a) zeros rot e1).
Proof.
  intros a Ha. unfold V, winner, wnorm2, stepv, rot, ones, zeros, e1, proj. simpl.
  split; [intros x y; right; ring|].
  split; [intros x y; right; ring|].
  split.
  - intros i Hi. destruct i as [|[|i]]; [| |lia]; unfold Rmax;
      destruct (Rle_dec 0 _); lra.
  - unfold Rmax. repeat destruct (Rle_dec 0 _); nra.
Qed.
