"""hwq.quant.digits: the worked example's CNN trains on scikit-learn's digits."""

from hwq.quant import evaluate


def test_float_model_trains(digits):
    model, (_, _, x_test, y_test) = digits
    assert evaluate(model, x_test, y_test, device="cpu") > 0.9


def test_training_shows_progress_only_when_asked(capsys):
    from hwq.quant.digits import train_digits_cnn
    train_digits_cnn(epochs=1, device="cpu")
    assert capsys.readouterr() == ("", "")
    train_digits_cnn(epochs=1, device="cpu", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "float training" in err and "/1 [" in err
