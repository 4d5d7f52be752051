// The Stripe card form (_card_form.html): Stripe.js's Card Element saves a card for later
// off-session charges through a SetupIntent. The card number goes to Stripe only; the
// server then records what Stripe lists (brand, last four digits, expiry).
(function () {
  var box = document.getElementById("card-setup");
  if (!box || typeof Stripe === "undefined") {
    return;
  }
  var stripe = Stripe(box.dataset.publishableKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var button = document.getElementById("card-save");
  var meta = document.querySelector('meta[name="csrf-token"]');

  async function save() {
    var started = await fetch("/payments/card-setup", {
      method: "POST",
      headers: { "X-CSRF-Token": meta ? meta.content : "" },
    });
    if (!started.ok) {
      throw new Error("the card form could not start (HTTP " + started.status + ")");
    }
    var setup = await started.json();
    var result = await stripe.confirmCardSetup(setup.client_secret, {
      payment_method: { card: card },
    });
    if (result.error) {
      throw new Error(result.error.message);
    }
    card.clear();
    // htmx adds the CSRF header (console.js) and swaps the methods table
    await htmx.ajax("POST", "/payments/card-setup/done", { target: "#methods-result" });
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    errors.textContent = "";
    save()
      .catch(function (error) {
        errors.textContent = error.message;
      })
      .finally(function () {
        button.disabled = false;
      });
  });
})();
