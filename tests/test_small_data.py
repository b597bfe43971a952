"""configs/small_data.py: labelled images and batch sizes adapt to the data set's size."""

import pytest

from configs import small_data
from exon_jax import configuration, experiment
from tests.synthetic import synthetic_mnist


@pytest.mark.parametrize(
    "num_train, per_class, batches",
    [
        # 30 a class: 3 labelled a class (30 // 10), 270 unlabelled -> 27 a step (270 / 10),
        # labelled 27 * 30 / 270 = 3.
        (300, 3, (27, 3)),
        # 5 a class: 1 labelled (the floor), 40 unlabelled -> 4, labelled 4 * 10 / 40 = 1.
        (50, 1, (4, 1)),
        # 6 000 a class: 600 labelled, 54 000 unlabelled -> 2 000 (the cap), 2000 * 6000 / 54000.
        (60000, 600, (2000, 222)),
    ],
)
def test_template_adapts_to_the_data_set(num_train, per_class, batches):
    config = small_data.get_config()
    configuration.validate_config(config)
    exp = experiment.build_experiment(config, synthetic_mnist(num_train=num_train, num_test=20))
    assert exp.labelled_idx.size == 10 * per_class
    assert exp.unlabelled_idx.size == num_train - 10 * per_class
    s = exp.settings
    assert (s.batch_unlabelled, s.batch_labelled) == batches
    assert s.steps_per_epoch == -(-(num_train - 10 * per_class) // batches[0])


def test_sizes_set_by_hand_win_and_are_still_checked():
    config = small_data.get_config()
    config.data.labelled_per_class = 2
    config.train.batch_unlabelled = 50
    exp = experiment.build_experiment(config, synthetic_mnist(num_train=300, num_test=20))
    assert exp.labelled_idx.size == 20
    assert exp.settings.batch_unlabelled == 50
    assert exp.settings.batch_labelled == round(50 * 20 / 280)
    config.train.batch_unlabelled = 1000
    with pytest.raises(configuration.ConfigError, match="train.batch_unlabelled"):
        experiment.build_experiment(config, synthetic_mnist(num_train=300, num_test=20))
    config.train.batch_unlabelled = -1
    with pytest.raises(configuration.ConfigError, match="train.batch_unlabelled"):
        configuration.validate_config(config)
