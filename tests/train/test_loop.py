"""The training loop: history in nats per datapoint, devices, interruption, divergence, errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vi.architectures import mlp_vae
from pyro_vi.data import DynamicBinarization, load_digits
from pyro_vi.models.conjugate import NormalNormal
from pyro_vi.train import History, TrainingDivergedError, evaluate_loss, fit


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_vae_on_digits_improves_test_elbo(digits, device):
    model, guide = mlp_vae(digits.image_shape, latent_dim=8, hidden=[128])
    train, test = DynamicBinarization(digits.train), DynamicBinarization(digits.test)
    pyro.set_rng_seed(0)
    before = evaluate_loss(model, guide, test[torch.arange(len(test))])
    history = fit(
        model,
        guide,
        train,
        test_data=test,
        epochs=8,
        batch_size=100,
        optim=pyro.optim.Adam({"lr": 3e-3}),
        device=device,
        progress=False,
    )
    assert all(p.device.type == device.type for p in [*model.parameters(), *guide.parameters()])
    assert history.epochs == 8 and len(history.test_loss) == 8 and len(history.seconds) == 8
    # An untrained Bernoulli decoder scores ~64 * log 2 = 44 nats on 8x8 images; a few epochs
    # bring a VAE near 30 (measured 29-31 across seeds), so 36 is a safe bound that only a
    # broken trainer misses.
    assert before > 40
    assert history.test_loss[-1] < 36
    assert history.test_loss[-1] < history.test_loss[0]


def test_loss_is_per_datapoint_whether_or_not_the_plate_is_scaled():
    # The same model with and without the num_data keyword: both histories are in nats per
    # datapoint, so the first-epoch losses agree up to Monte Carlo and optimization noise.
    conjugate = NormalNormal(torch.zeros(2), 1.0, 0.5)
    x = conjugate.sample(400)
    exact = -conjugate.log_evidence(x).mean().item()

    def unscaled_model(x):
        return conjugate.model(x)

    def unscaled_guide(x):
        return conjugate.guide(x)

    scaled = fit(
        conjugate.model,
        conjugate.guide,
        x,
        epochs=1,
        batch_size=50,
        progress=False,
        optim=pyro.optim.Adam({"lr": 1e-12}),
    )
    unscaled = fit(
        unscaled_model,
        unscaled_guide,
        x,
        epochs=1,
        batch_size=50,
        progress=False,
        optim=pyro.optim.Adam({"lr": 1e-12}),
    )
    # The exact posterior guide makes every loss exact, so both equal -log p(x) per point.
    assert scaled.train_loss[0] == pytest.approx(exact, rel=1e-5)
    assert unscaled.train_loss[0] == pytest.approx(exact, rel=1e-5)


def test_tuple_data_is_passed_positionally():
    seen = []

    def model(x, y):
        seen.append((x.shape, y.shape))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(y.float(), 1.0), obs=x)

    def guide(x, y):
        pass

    fit(model, guide, (torch.randn(10), torch.arange(10)), epochs=1, batch_size=4, progress=False)
    assert seen[-1] == ((2,), (2,))


def test_keyboard_interrupt_returns_history():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    x = torch.bernoulli(torch.full((20, 1, 8, 8), 0.5))

    def stop(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    history = fit(model, guide, x, epochs=5, batch_size=10, progress=False, callback=stop)
    assert history.interrupted and history.epochs == 2


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_divergence_raises_with_history():
    def model(x):
        scale = pyro.param("scale", torch.tensor(1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(0.0, scale * math.nan, validate_args=False), obs=x)

    with pytest.raises(TrainingDivergedError, match="the loss became nan") as info:
        fit(model, lambda x: None, torch.randn(8), epochs=2, progress=False)
    assert isinstance(info.value.history, History)


def test_lr_scheduler_is_stepped_per_epoch():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    x = torch.bernoulli(torch.full((20, 1, 8, 8), 0.5))
    scheduler = pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": 1.0}, "gamma": 0.5}
    )
    history = fit(model, guide, x, epochs=3, batch_size=10, optim=scheduler, progress=False)
    assert history.learning_rate == [1.0, 0.5, 0.25]


def test_history_to_dict():
    history = History(train_loss=[3.0, 2.0], test_loss=[3.5, 2.5], seconds=[0.1, 0.1])
    out = history.to_dict()
    assert out["train_bound"] == [-3.0, -2.0] and out["unit"] == "nats per datapoint"


def test_bad_arguments():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        fit(model, guide, x, epochs=0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        fit(model, guide, x, batch_size=2.5)
    with pytest.raises(TypeError, match="loss must be a pyro.infer.ELBO"):
        fit(model, guide, x, loss=3)
    with pytest.raises(ValueError, match="unknown estimator 'elb'"):
        fit(model, guide, x, loss="elb")
    with pytest.raises(TypeError, match="optim must be a pyro.optim optimizer"):
        fit(model, guide, x, optim=3)
    with pytest.raises(TypeError, match=r"optim must be an optimizer \*class\*"):
        fit(model, guide, x, optim=torch.optim.Adam([torch.zeros(1, requires_grad=True)]))
    with pytest.raises(TypeError, match="train_data must be a torch.Tensor"):
        fit(model, guide, [[0.0]])
    with pytest.raises(ValueError, match="different lengths"):
        fit(model, guide, (x, torch.zeros(3)))
    with pytest.raises(ValueError, match="train_data is empty"):
        fit(model, guide, x[:0])
    with pytest.raises(ValueError, match="device must be"):
        fit(model, guide, x, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_request_without_cuda_is_a_clear_error():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    with pytest.raises(ValueError, match="CUDA is not available"):
        fit(model, guide, torch.zeros(4, 1, 8, 8), device="cuda")


@pytest.mark.cuda
def test_fit_on_cuda_puts_everything_on_the_gpu(digits):
    model, guide = mlp_vae(digits.image_shape, latent_dim=4, hidden=[32])
    seen = []

    def watch(epoch, history):
        seen.extend(p.device.type for p in pyro.get_param_store().values())

    history = fit(
        model,
        guide,
        DynamicBinarization(digits.train),
        test_data=DynamicBinarization(digits.test),
        epochs=2,
        device="cuda",
        progress=False,
        loss=Trace_ELBO(),
        callback=watch,
    )
    assert history.epochs == 2 and math.isfinite(history.test_loss[-1])
    assert {p.device.type for m in (model, guide) for p in m.parameters()} == {"cuda"}
    assert set(seen) == {"cuda"}


@pytest.mark.cuda
def test_free_pyro_params_are_moved_to_the_gpu():
    def model(x):
        loc = pyro.param("loc", torch.zeros(()))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(loc, 1.0), obs=x)

    pyro.param("loc", torch.zeros(()))  # created on the CPU before training
    fit(model, lambda x: None, torch.randn(16), epochs=1, device="cuda", progress=False)
    assert pyro.param("loc").device.type == "cuda"


def test_max_seconds_stops_training_within_the_budget(digits):
    model, guide = mlp_vae(digits.image_shape, latent_dim=4, hidden=[32])
    train = DynamicBinarization(digits.train)
    history = fit(
        model, guide, train, epochs=10_000, batch_size=10, max_seconds=0.3, progress=False
    )
    assert history.out_of_time
    # Stopped by the budget, at the first step that ended past it: the training time is at
    # least the budget and far fewer than the 10000 epochs ran. How far past the budget and in
    # which epoch it stopped depend on the machine's speed and load, and are not asserted.
    assert sum(history.seconds) >= 0.3 and 1 <= history.epochs < 10_000
    assert all(math.isfinite(v) for v in history.train_loss)


def test_max_seconds_must_be_positive(digits):
    model, guide = mlp_vae(digits.image_shape, latent_dim=4, hidden=[32])
    with pytest.raises(ValueError, match="max_seconds must be > 0"):
        fit(model, guide, digits.train, max_seconds=0, progress=False)


def test_validation_early_stopping_and_the_best_checkpoint(tmp_path):
    # A learning rate so large that the validation loss worsens after the first epochs: training
    # stops `patience` epochs after the best, whose parameters are in the best checkpoint.
    from pyro_vi.train import load_parameters

    torch.manual_seed(0)
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[16])
    data = torch.bernoulli(torch.rand(96, 1, 8, 8))
    train, validation = data[:64], data[64:]
    history = fit(
        model,
        guide,
        train,
        validation_data=validation,
        epochs=40,
        batch_size=16,
        seed=0,
        optim=pyro.optim.Adam({"lr": 0.3}),
        early_stopping=2,
        progress=False,
        best_checkpoint=tmp_path / "best.ckpt",
    )
    assert history.stopped_early and len(history.validation_loss) == history.epochs
    assert history.best_epoch == min(range(history.epochs), key=history.validation_loss.__getitem__)
    assert history.epochs == history.best_epoch + 3
    assert len(history.grad_norm) == history.epochs and all(g > 0 for g in history.grad_norm)
    restored = load_parameters(tmp_path / "best.ckpt", model, guide, validation[:4])
    assert restored.best_epoch == history.best_epoch
    again = evaluate_loss(model, guide, validation, Trace_ELBO(num_particles=200))
    assert again == pytest.approx(history.validation_loss[history.best_epoch], abs=1.0)


def test_early_stopping_needs_validation_data():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    with pytest.raises(ValueError, match="pass validation_data"):
        fit(model, guide, torch.zeros(4, 1, 8, 8), early_stopping=2, progress=False)
    with pytest.raises(ValueError, match="best_callback follow the validation loss"):
        fit(model, guide, torch.zeros(4, 1, 8, 8), best_callback=print, progress=False)


def test_best_callback_runs_before_the_epoch_is_checkpointed(tmp_path):
    # What a run folder relies on to keep best.pt: when the callback runs, the checkpoint does
    # not yet record the improving epoch, so a kill there trains that epoch again.
    from pyro_vi.train.checkpoint import load_checkpoint

    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    data = torch.bernoulli(torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    seen = []

    def on_best(epoch, history):
        state = tmp_path / "state.pt"
        checkpointed = load_checkpoint(state)["position"]["epoch"] if state.exists() else 0
        seen.append((epoch, history.best_epoch, checkpointed))

    history = fit(
        model,
        guide,
        data[:32],
        validation_data=data[32:],
        epochs=3,
        batch_size=16,
        seed=0,
        progress=False,
        checkpoint=tmp_path / "state.pt",
        best_callback=on_best,
    )
    assert seen and seen[-1][0] == history.best_epoch
    assert all(epoch == best == checkpointed for epoch, best, checkpointed in seen)


def test_a_map_style_dataset_trains_directly():
    images = torch.bernoulli(torch.full((20, 1, 8, 8), 0.4))

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return images[index]

    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    history = fit(model, guide, Images(), epochs=2, batch_size=8, progress=False)
    assert history.epochs == 2 and all(math.isfinite(v) for v in history.train_loss)


def test_a_data_loader_trains_through_its_dataset_and_batch_size():
    images = torch.bernoulli(torch.full((20, 1, 8, 8), 0.4))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images), batch_size=5, shuffle=True
    )
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    history = fit(model, guide, loader, epochs=1, progress=False)
    assert history.steps == [4]  # the loader's batch size: 20 images in batches of 5
    history = fit(model, guide, loader, epochs=1, batch_size=10, progress=False)
    assert history.steps == [2]  # fit's own batch size wins when given


def test_a_data_loader_with_its_own_batching_is_refused():
    images = torch.rand(10, 4)
    dataset = torch.utils.data.TensorDataset(images)
    custom = [
        torch.utils.data.DataLoader(dataset, collate_fn=lambda items: items),
        torch.utils.data.DataLoader(
            dataset, sampler=torch.utils.data.WeightedRandomSampler([1.0] * 10, 10)
        ),
    ]
    for loader in custom:
        with pytest.raises(ValueError, match="train_data is a DataLoader with a custom"):
            fit(lambda x: None, lambda x: None, loader, progress=False)
